export {
  boolean,
  ConfigError,
  type Env,
  integer,
  LOG_LEVELS,
  type LogLevel,
  logLevel,
  nodeList,
  text,
  url,
} from './config.ts';
export { createPool, type PoolOptions } from './database.ts';
export { ApiError, type ErrorBody, errorBody, registerErrorHandling } from './http-errors.ts';
