// Child process for the SQLite durability test: writes resources one by one into the store in
// argv[2] and prints "ack <name> <resourceVersion>" after each put resolves, until it is killed.
import { SqliteStore } from '../../src/store/sqlite-store.ts';

const store = new SqliteStore({ dataDir: process.argv[2]! });
for (let i = 0; ; i++) {
  const r = await store.put({
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: `svc-${i}`, namespace: 'default' },
    spec: { hosts: [`svc-${i}.example.com`], ports: [{ number: 80, name: 'http' }] },
  });
  process.stdout.write(`ack ${r.metadata.name} ${r.metadata.resourceVersion}\n`);
}
