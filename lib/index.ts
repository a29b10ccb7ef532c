export { Supervisor, type SupervisorOptions, type SupervisorEvents } from './supervisor/supervisor.js';
export { Task, type TaskEvents, type WardenRecord, type LogLevel } from './supervisor/task.js';
export type { TaskSpec, TaskResult, TaskState, TerminationReason, TeardownReport, TeardownStep, SignalRecord, Containment } from './supervisor/types.js';
export { DEFAULTS } from './supervisor/options.js';
export { WardenError, type WardenErrorCode } from './errors.js';
export { Signaller, type SignalOutcome, type ProcessRef } from './signal/signaller.js';
export { COOKIE_NAME } from './process/spawn-task.js';
