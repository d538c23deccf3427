// optim: optimizers (AdamW, SGD), gradient clipping and learning-rate schedules.
export { Optimizer } from './optimizer.js';
export type {
  OptimizerStateDict, ParamGroup, ParamGroupInput, ParamsArg, StateEntry, StepOptions, HyperValue,
} from './optimizer.js';
export { AdamW, paramGroupsForDecay } from './adamw.js';
export type { AdamWOptions, AdamWHyper, AdamWStepOptions } from './adamw.js';
export { SGD } from './sgd.js';
export type { SGDOptions, SGDHyper } from './sgd.js';
export { clipGradNorm, clipGradNormTensor, clipGradValue } from './clip.js';
export type { ClipGradNormOptions } from './clip.js';
export { GradScaler } from './grad_scaler.js';
export type { GradScalerOptions } from './grad_scaler.js';
export { lrSchedule, withWarmup, LRScheduler, lrScheduler } from './schedules.js';
export type { LrFn, ScheduleOptions, SchedulableOptimizer, LRSchedulerStateDict } from './schedules.js';
