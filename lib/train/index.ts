export { Trainer, type TrainerOptions, type TrainResult, type StepMetrics, type EvalMetrics, type BatchSource, type Batch } from './trainer.js';
export { Progress, type ProgressMode } from './progress.js';
export * as metrics from './metrics.js';
export type { PrecisionRecallF1, ClassScores, PRF, ReportOptions } from './metrics.js';
export {
  finetuneClassifier, evaluateClassifier, readLabelledExamples, parseCsv, buildWordPieceVocab, spamAssassinExamples,
  splitExamples, ClassificationData, type TextExample, type FinetuneOptions, type FinetuneResult, type ClassifierEval,
} from './finetune.js';
