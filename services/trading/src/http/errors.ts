// bench/direct-publish-server.ts imports this path; the service itself imports @astra/service-support.
export { ApiError, type ErrorBody, errorBody, registerErrorHandling } from '@astra/service-support';
