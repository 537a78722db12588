// Queues shared by every VM with the same vm_id. The VM that registered a queue last is told when items
// arrive (as in cpp-host); if it goes away, the one that registered it before takes over, so a plugin's
// pool of VMs (each registering the queue from its root context) keeps being told when one VM fails.
import { MAX_SHARED_QUEUE_ITEMS } from './limits.ts';

export interface QueueOwner {
  /** Called asynchronously after an enqueue; the owner calls proxy_on_queue_ready. */
  queueReady(queueId: number): void;
}

interface Queue {
  id: number;
  vmId: string;
  name: string;
  items: Uint8Array[];
  /** VMs that registered the queue, oldest first; the last one is told. */
  owners: QueueOwner[];
}

export class SharedQueueRegistry {
  #byId = new Map<number, Queue>();
  #byName = new Map<string, Queue>();
  #nextId = 1;

  /** Creates the queue, or reopens it keeping its items; the caller becomes the one notified. */
  register(vmId: string, name: string, owner: QueueOwner): number {
    const key = `${vmId}\0${name}`;
    let q = this.#byName.get(key);
    if (!q) {
      q = { id: this.#nextId++, vmId, name, items: [], owners: [] };
      this.#byName.set(key, q);
      this.#byId.set(q.id, q);
    }
    const at = q.owners.indexOf(owner);
    if (at >= 0) q.owners.splice(at, 1);
    q.owners.push(owner);
    for (let i = 0; i < q.items.length; i++) this.#scheduleNotify(q);
    return q.id;
  }

  resolve(vmId: string, name: string): number | undefined {
    return this.#byName.get(`${vmId}\0${name}`)?.id;
  }

  /** 'ok', 'not-found', or 'full' when the queue holds MAX_SHARED_QUEUE_ITEMS already. */
  enqueue(queueId: number, item: Uint8Array): 'ok' | 'not-found' | 'full' {
    const q = this.#byId.get(queueId);
    if (!q) return 'not-found';
    if (q.items.length >= MAX_SHARED_QUEUE_ITEMS) return 'full';
    q.items.push(item);
    this.#scheduleNotify(q);
    return 'ok';
  }

  /** The front item, null when empty, undefined for an unknown id. */
  dequeue(queueId: number): Uint8Array | null | undefined {
    const q = this.#byId.get(queueId);
    if (!q) return undefined;
    return q.items.shift() ?? null;
  }

  /**
   * A VM going away stops being notified; its queues and items stay, for the VM that registered before
   * it (notifications already scheduled go there) or the next registrant.
   */
  release(owner: QueueOwner): void {
    for (const q of this.#byId.values()) {
      const at = q.owners.indexOf(owner);
      if (at >= 0) q.owners.splice(at, 1);
    }
  }

  /** One notification per item, as cpp-host does, delivered from the event loop (never nested in a guest call). */
  #scheduleNotify(q: Queue): void {
    if (q.owners.length === 0) return;
    setImmediate(() => q.owners[q.owners.length - 1]?.queueReady(q.id));
  }
}
