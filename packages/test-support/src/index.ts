export {
  type Exit,
  liveProcesses,
  ManagedProcess,
  type RunResult,
  run,
  runOk,
  type SpawnOptions,
  spawnManaged,
} from './processes.ts';
export { freePort, sleep, TimeoutError, waitFor } from './wait.ts';
