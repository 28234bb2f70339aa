export {
  type Exit,
  liveProcesses,
  ManagedProcess,
  run,
  type SpawnOptions,
  spawnManaged,
} from './processes.ts';
export { freePort, sleep, TimeoutError, waitFor } from './wait.ts';
