// Key-value data shared by every VM with the same vm_id, with compare-and-swap (proxy_*_shared_data).

interface Entry {
  value: Uint8Array;
  cas: number;
}

export type SetResult = 'ok' | 'cas-mismatch';

export class SharedDataStore {
  #byVm = new Map<string, Map<string, Entry>>();
  /** One counter for the whole store, skipping 0 (0 means "write unconditionally"). */
  #nextCas = 1;

  get(vmId: string, key: string): Entry | undefined {
    return this.#byVm.get(vmId)?.get(key);
  }

  /** cas 0 writes unconditionally; otherwise it must equal the stored cas (a missing key is created). */
  set(vmId: string, key: string, value: Uint8Array, cas: number): SetResult {
    let data = this.#byVm.get(vmId);
    if (!data) {
      data = new Map();
      this.#byVm.set(vmId, data);
    }
    const current = data.get(key);
    if (cas !== 0 && current && current.cas !== cas) return 'cas-mismatch';
    const next = this.#nextCas;
    this.#nextCas = next >= 0xffffffff ? 1 : next + 1;
    data.set(key, { value, cas: next });
    return 'ok';
  }

  keys(vmId: string): string[] {
    return [...(this.#byVm.get(vmId)?.keys() ?? [])];
  }
}
