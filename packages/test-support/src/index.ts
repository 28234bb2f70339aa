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
export { type RedisServer, type RedisServerOptions, startRedisServer } from './redis.ts';
export { freePort, sleep, TimeoutError, waitFor } from './wait.ts';
