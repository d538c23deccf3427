// Linear regression by gradient descent on the mean squared error, with autograd:
//   y ≈ θ0 + θ1·x1 + ... + θd·xd
// The weights and the bias are tensors that require grad; each step computes the MSE over
// the whole data set, backpropagates, and lets optim.SGD update them. The features are
// standardized first (zero mean, unit variance: gradient descent then converges in a few
// hundred steps whatever the scale of x) and θ is mapped back to the original units. The
// closed-form least-squares answer, from the normal equations XᵀX θ = Xᵀy solved in plain
// JavaScript, is printed beside it.
//
//   node --import ./scripts/ts-loader.mjs examples/linear-regression.ts [--steps N] [--lr X]
import { pathToFileURL } from 'node:url';
import * as ng from '../lib/index.js';
import { Rng } from '../lib/data/dataset.js';

export interface FitOptions {
  /** Gradient-descent steps (full batch; default 500). */
  steps?: number;
  /** Learning rate on the standardized problem (default 0.1). */
  lr?: number;
  /** SGD momentum (default 0.9). */
  momentum?: number;
  dtype?: 'float32' | 'float64';
}

export interface FitResult {
  /** [θ0 (intercept), θ1, ..., θd] found by gradient descent. */
  theta: number[];
  /** Mean squared error of theta on the data. */
  mse: number;
  /** The least-squares solution of the normal equations. */
  closedForm: number[];
  closedFormMse: number;
  /** MSE after each step (on the standardized problem, which has the same residuals). */
  history: number[];
}

/** Solves A z = b (A square) by Gaussian elimination with partial pivoting, in float64. */
export function solve(A: number[][], b: number[]): number[] {
  const n = A.length;
  const M = A.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    if (Math.abs(M[p][c]) < 1e-12) throw new Error('linear-regression: the normal equations are singular (collinear features?)');
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const z = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * z[k];
    z[r] = s / M[r][r];
  }
  return z;
}

/** θ = (XᵀX)⁻¹ Xᵀy with a leading column of ones in X (the intercept). */
export function leastSquares(xs: number[][], ys: number[]): number[] {
  const d = xs[0].length + 1;
  const A = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  const b = new Array<number>(d).fill(0);
  for (let i = 0; i < xs.length; i++) {
    const row = [1, ...xs[i]];
    for (let r = 0; r < d; r++) {
      b[r] += row[r] * ys[i];
      for (let c = 0; c < d; c++) A[r][c] += row[r] * row[c];
    }
  }
  return solve(A, b);
}

export function meanSquaredError(theta: number[], xs: number[][], ys: number[]): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) {
    let pred = theta[0];
    for (let j = 0; j < xs[i].length; j++) pred += theta[j + 1] * xs[i][j];
    s += (pred - ys[i]) ** 2;
  }
  return s / xs.length;
}

/** Fits y ≈ θ0 + Σ θj xj by full-batch gradient descent (x: one row of features per sample, or one number). */
export function fitLinear(x: readonly (number | readonly number[])[], y: readonly number[], opts: FitOptions = {}): FitResult {
  const xs = x.map((r) => (typeof r === 'number' ? [r] : [...r]));
  const ys = [...y];
  const n = xs.length, d = xs[0]?.length ?? 0;
  if (n < 2 || d === 0 || ys.length !== n || xs.some((r) => r.length !== d)) {
    throw new Error(`linear-regression: expected at least 2 samples with the same number of features and one target each (got ${n} samples, ${ys.length} targets)`);
  }
  const { steps = 500, lr = 0.1, momentum = 0.9, dtype = 'float32' } = opts;
  // standardize: z = (x - mu) / sigma, so the loss surface is close to round
  const mu = Array.from({ length: d }, (_, j) => xs.reduce((s, r) => s + r[j], 0) / n);
  const sigma = Array.from({ length: d }, (_, j) => Math.sqrt(xs.reduce((s, r) => s + (r[j] - mu[j]) ** 2, 0) / n) || 1);
  const Z = new Float64Array(n * d);
  xs.forEach((r, i) => r.forEach((v, j) => { Z[i * d + j] = (v - mu[j]) / sigma[j]; }));
  const X = ng.tensor(Z, { shape: [n, d], dtype });
  const Y = ng.tensor(Float64Array.from(ys), { shape: [n], dtype });
  const w = ng.zeros([d], { dtype, requiresGrad: true });
  const b = ng.zeros([1], { dtype, requiresGrad: true });
  const opt = new ng.optim.SGD([w, b], { lr, momentum });
  const history: number[] = [];
  for (let s = 0; s < steps; s++) {
    ng.scope(() => {
      const pred = X.matmul(w).add(b);
      const loss = ng.nn.functional.mseLoss(pred, Y);
      loss.backward();
      history.push(loss.item());
    });
    opt.step();
    opt.zeroGrad();
  }
  const wz = Array.from(w.dataSync() as ArrayLike<number>), bz = b.item();
  ng.dispose([X, Y, w, b, opt.stateDict().state]);
  // back to the original units: y = bz + Σ wz_j (x_j - mu_j) / sigma_j
  const slopes = wz.map((v, j) => v / sigma[j]);
  const theta = [bz - slopes.reduce((s, v, j) => s + v * mu[j], 0), ...slopes];
  const closedForm = leastSquares(xs, ys);
  return { theta, mse: meanSquaredError(theta, xs, ys), closedForm, closedFormMse: meanSquaredError(closedForm, xs, ys), history };
}

/** n samples of y = θ·[1, x] + N(0, noise²), x uniform in [lo, hi) per feature (seeded). */
export function syntheticData(theta: number[], n: number, opts: { noise?: number; lo?: number; hi?: number; seed?: number } = {}): { x: number[][]; y: number[] } {
  const { noise = 1, lo = 0, hi = 10, seed = 0 } = opts;
  const rng = new Rng(seed);
  const u = (): number => (rng.nextU32() + 0.5) / 4294967296;
  const gauss = (): number => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  const x: number[][] = [], y: number[] = [];
  for (let i = 0; i < n; i++) {
    const row = Array.from({ length: theta.length - 1 }, () => lo + (hi - lo) * u());
    x.push(row);
    y.push(theta[0] + row.reduce((s, v, j) => s + theta[j + 1] * v, 0) + noise * gauss());
  }
  return { x, y };
}

function report(title: string, trueTheta: number[], r: FitResult): void {
  const f = (v: number): string => v.toFixed(4).padStart(10);
  const names = trueTheta.map((_, i) => `θ${i}`);
  console.log(`\n${title}`);
  console.log(`${''.padEnd(14)}${names.map((s) => s.padStart(10)).join('')}${'MSE'.padStart(10)}`);
  console.log(`${'true'.padEnd(14)}${trueTheta.map(f).join('')}`);
  console.log(`${'grad. descent'.padEnd(14)}${r.theta.map(f).join('')}${f(r.mse)}`);
  console.log(`${'closed form'.padEnd(14)}${r.closedForm.map(f).join('')}${f(r.closedFormMse)}`);
  const gap = Math.max(...r.theta.map((v, i) => Math.abs(v - r.closedForm[i])));
  console.log(`max |θ_gd - θ_ls| = ${gap.toExponential(2)}; MSE after step 1, 10, 100, ${r.history.length}: ` +
    [0, 9, 99, r.history.length - 1].filter((i) => i < r.history.length).map((i) => r.history[i].toFixed(4)).join(', '));
}

function main(argv: string[]): void {
  const arg = (name: string, dflt: number): number => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  const steps = arg('steps', 500), lr = arg('lr', 0.1);
  const uni = [2, 3];
  const d1 = syntheticData(uni, 200, { noise: 1, seed: 1 });
  report(`y = θ0 + θ1·x  (200 points, x in [0,10), noise σ=1; ${steps} full-batch steps, lr ${lr}, momentum 0.9)`, uni, fitLinear(d1.x, d1.y, { steps, lr }));
  const multi = [1, 2, -3, 0.5];
  const d3 = syntheticData(multi, 500, { noise: 0.5, lo: -5, hi: 5, seed: 2 });
  report(`y = θ0 + θ1·x1 + θ2·x2 + θ3·x3  (500 points, x in [-5,5)³, noise σ=0.5)`, multi, fitLinear(d3.x, d3.y, { steps, lr }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
