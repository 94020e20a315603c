/**
 * The wire types of the PHT REST API (/api/v1), shared by the registry, the site client and the
 * researcher SDK. Each is derived from its JSON schema in shared/schemas.ts, the one definition.
 *
 * Glossary
 * - site: a hospital (or any data holder) running the site client next to its own SPARQL endpoint.
 *   It authenticates with one API key and only ever sees its own runs.
 * - researcher: a person (or script) that posts tasks and reads their results, with an API token.
 * - admin: a researcher who may see every task; principals themselves are managed from the
 *   registry's command line.
 * - task: one request to run a Docker image, with a config, at a set of target sites.
 * - run: the execution of a task at one site. A task has exactly one run per target site.
 * - result: what a run sends back: the files of its output folder, its exit code, the image digest
 *   that actually ran, and its final state.
 * - allowlist: a site's list of image patterns it agrees to run; anything else is rejected
 *   without being pulled.
 */
import type { FromSchema } from 'json-schema-to-ts';
import type {
  apiErrorSchema,
  createTaskSchema,
  emptyBodySchema,
  finishReportSchema,
  logAppendSchema,
  progressReportSchema,
  resultFileSchema,
  runAssignmentSchema,
  runDetailSchema,
  runProgressSchema,
  siteInfoSchema,
  siteMeSchema,
  siteRunViewSchema,
  taskListSchema,
  taskSchema,
  taskWaitResultSchema,
  taskDeletedSchema,
  userMeSchema,
  taskSummarySchema,
  taskSummaryListSchema,
  siteActivitySchema,
  siteActivityListSchema,
  createdSiteSchema,
  createdUserSchema,
  userInfoSchema,
  siteEnabledSchema,
} from './schemas.js';

export type Role = FromSchema<typeof userMeSchema>['role'];

/** A task's config as the registry stores it: opaque to the registry (it may be encrypted later). */
export type TaskConfig = unknown;

export type CreateTaskRequest = FromSchema<typeof createTaskSchema>;
export type ProgressReport = FromSchema<typeof progressReportSchema>;
export type LogAppend = FromSchema<typeof logAppendSchema>;
export type FinishReport = FromSchema<typeof finishReportSchema>;
export type FinishState = FinishReport['state'];
export type EmptyBody = FromSchema<typeof emptyBodySchema>;

export type RunProgress = FromSchema<typeof runProgressSchema>;
export type RunDetail = FromSchema<typeof runDetailSchema>;
export type RunSummary = Pick<RunDetail, 'id' | 'site' | 'status'>;
export type Task = FromSchema<typeof taskSchema>;
export type TaskList = FromSchema<typeof taskListSchema>;
export type TaskWaitResult = FromSchema<typeof taskWaitResultSchema>;
/** What `DELETE /tasks/:id` answers: how much went with the task. */
export type TaskDeleted = FromSchema<typeof taskDeletedSchema>;
export type ResultFile = FromSchema<typeof resultFileSchema>;
export type SiteInfo = FromSchema<typeof siteInfoSchema>;
export type UserMe = FromSchema<typeof userMeSchema>;
export type SiteMe = FromSchema<typeof siteMeSchema>;

/** What a site receives when it claims a run. */
export type RunAssignment = FromSchema<typeof runAssignmentSchema>;

/** The run as its site sees it: enough to decide whether to go on. */
export type SiteRunView = FromSchema<typeof siteRunViewSchema>;

export type ApiErrorBody = FromSchema<typeof apiErrorSchema>;

/** The dashboard's overviews and the admin routes' answers. */
export type TaskSummary = FromSchema<typeof taskSummarySchema>;
export type TaskSummaryList = FromSchema<typeof taskSummaryListSchema>;
export type SiteActivity = FromSchema<typeof siteActivitySchema>;
export type SiteActivityList = FromSchema<typeof siteActivityListSchema>;
export type CreatedSite = FromSchema<typeof createdSiteSchema>;
export type CreatedUser = FromSchema<typeof createdUserSchema>;
export type UserInfo = FromSchema<typeof userInfoSchema>;
export type SiteEnabled = FromSchema<typeof siteEnabledSchema>;
