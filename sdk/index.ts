/**
 * The PHT researcher SDK: post analyses (Docker images) to the registry, wait for the sites to
 * run them, and read logs and results. `require('pht')` / `import { PhtClient } from 'pht'`.
 */
export { PhtClient } from './client.js';
export type {
  CallOptions,
  FollowRunLogOptions,
  ListTasksOptions,
  PhtClientOptions,
  RunTaskOptions,
  RunWithResult,
  SavedFile,
  TaskWithResults,
  WaitForTaskOptions,
} from './client.js';
export {
  PhtApiError,
  PhtConnectionError,
  PhtError,
  PhtResponseError,
  PhtResultError,
  PhtTimeoutError,
} from './errors.js';
export type { Me } from './response-shapes.js';
export { PhtSealingError, ResearcherKeys } from './sealed.js';
export type { ResearcherKeysOptions, SealedTaskRequest } from './sealed.js';
export { ERROR_CODES, type ErrorCode } from '../shared/error-codes.js';
export {
  FINAL_RUN_STATES,
  isFinalRunState,
  isFinalTaskStatus,
  RUN_STATES,
  TASK_STATUSES,
  type RunState,
  type TaskStatus,
} from '../shared/run-state.js';
export type {
  CreateTaskRequest,
  ResultFile,
  RunDetail,
  RunProgress,
  RunSummary,
  SiteInfo,
  Task,
  TaskConfig,
  TaskDeleted,
  TaskList,
} from '../shared/types.js';
