export { Trainer, type TrainerOptions, type TrainResult, type StepMetrics, type EvalMetrics, type BatchSource, type Batch } from './trainer.js';
export { Progress, type ProgressMode } from './progress.js';
