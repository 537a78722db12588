import { run } from '../cli/proxy.ts';
const code = await run(['--orchestrator', '127.0.0.1:1', '--workload', 'web', '--first-config-timeout', '500', '--data-dir', '/tmp/dbgx/dd', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'error']);
console.log('code', code);
setTimeout(() => { console.log(process.getActiveResourcesInfo()); }, 300).unref();
