// Thread pool: workers spin briefly, then sleep on a condition variable; a job is one function called
// with (tid, nthreads). Jobs are serialised by a mutex: kernels are launched from the
// JavaScript thread only, one at a time; nested parallel calls run inline.
// An exception thrown by any thread of a job (a failed scratch allocation, say) is kept
// and rethrown on the calling thread once every thread has left the job, so the job's
// stack frame outlives all its users and no exception ever ends a worker thread.
#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ng {
namespace {

// Waiting: a worker that finishes a job spins for a short while (NODEGRAD_SPIN_US,
// default 100 us; 0 turns spinning off) before it sleeps on the condition variable,
// and so does the caller waiting for the workers. Kernels come back to back in a
// training step, so the next job usually finds its workers awake on their own cores:
// waking a sleeper costs 5-50 us here, and the kernel places a woken thread on the
// waker's core about half the time, so the two share a core until the scheduler moves
// one of them (a 2-thread GEMM then ran at half speed for whole calls).
// Handshakes: a job is published as one word, state_ = generation << 16 | threads, after
// its function pointer; a sleeper registers in sleepers_ before it checks state_ under
// mu_, and the caller bumps state_ before it reads sleepers_ (both sequentially
// consistent), so either the caller sees the sleeper and notifies it or the sleeper sees
// the job. The caller's wait for pending_ == 0 pairs with caller_waits_ the same way.
class Pool {
 public:
  Pool() : spin_ns_(spin_budget_ns()) { resize(default_threads()); }
  ~Pool() { stop(); }

  static int default_threads() {
    unsigned hc = std::thread::hardware_concurrency();
    return hc == 0 ? 1 : static_cast<int>(std::min(hc, 64u));
  }
  int size() const { return nthreads_; }

  void resize(int n) {
    n = std::max(1, std::min(n, 256));
    // wait for a job in flight (from another thread) to finish before replacing workers
    std::lock_guard<std::mutex> job_lock(job_mu_);
    if (n == nthreads_) return;
    stop();
    nthreads_ = n;
    quit_.store(false);
    // New workers start from the current state so they do not run a finished job.
    const uint64_t seen = state_.load();
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, seen] { loop(i, seen); });
  }

  void run(int nt, const std::function<void(int, int)>& fn) {
    nt = std::max(1, std::min(nt, nthreads_));
    if (nt == 1 || in_job_) {
      fn(0, 1);
      return;
    }
    std::lock_guard<std::mutex> job_lock(job_mu_);
    job_.store(&fn, std::memory_order_relaxed);
    pending_.store(nt - 1, std::memory_order_relaxed);
    const uint64_t gen = (state_.load(std::memory_order_relaxed) >> 16) + 1;
    state_.store(gen << 16 | static_cast<uint64_t>(nt));  // seq_cst: publishes job_, pending_
    if (sleepers_.load() > 0) {
      { std::lock_guard<std::mutex> lk(mu_); }
      cv_.notify_all();
    }
    in_job_ = true;
    try {
      fn(0, nt);
    } catch (...) {
      keep_error(std::current_exception());
    }
    in_job_ = false;
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      caller_waits_.store(true);
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [this] { return pending_.load() == 0; });
      caller_waits_.store(false, std::memory_order_relaxed);
    }
    std::exception_ptr err;
    {
      std::lock_guard<std::mutex> lk(mu_);
      err = error_;
      error_ = nullptr;
    }
    if (err) std::rethrow_exception(err);
  }

 private:
  static int64_t spin_budget_ns() {
    const char* e = std::getenv("NODEGRAD_SPIN_US");
    if (e == nullptr || *e == '\0') return 100000;
    char* end = nullptr;
    const double us = std::strtod(e, &end);
    return end == e || !(us > 0) ? 0 : static_cast<int64_t>(std::min(us, 1e6) * 1000);
  }
  // Spins for up to spin_ns_ until ready() holds; true when it did.
  template <class F>
  bool spin_until(const F& ready) const {
    if (ready()) return true;
    if (spin_ns_ <= 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns_);
    for (unsigned i = 1;; ++i) {
      cpu_relax();
      if (ready()) return true;
      if ((i & 63) == 0 && std::chrono::steady_clock::now() >= deadline) return false;
    }
  }

  void loop(int tid, uint64_t seen) {
    for (;;) {
      auto changed = [&] { return state_.load(std::memory_order_acquire) != seen || quit_.load(std::memory_order_relaxed); };
      if (!spin_until(changed)) {
        sleepers_.fetch_add(1);
        {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [&] { return state_.load() != seen || quit_.load(); });
        }
        sleepers_.fetch_sub(1);
      }
      if (quit_.load()) return;
      seen = state_.load(std::memory_order_acquire);
      const int nt = static_cast<int>(seen & 0xFFFF);
      // A worker inside the job's thread count holds the caller until it finishes, so
      // job_ is still this job's; one outside it never reads job_.
      if (tid >= nt) continue;
      const std::function<void(int, int)>* job = job_.load(std::memory_order_relaxed);
      in_job_ = true;
      try {
        (*job)(tid, nt);
      } catch (...) {
        keep_error(std::current_exception());
      }
      in_job_ = false;
      if (pending_.fetch_sub(1) == 1 && caller_waits_.load()) {
        { std::lock_guard<std::mutex> lk(mu_); }
        done_cv_.notify_one();
      }
    }
  }
  // The first exception of a job wins; later ones are dropped.
  void keep_error(std::exception_ptr e) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!error_) error_ = e;
  }
  void stop() {
    quit_.store(true);
    { std::lock_guard<std::mutex> lk(mu_); }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  const int64_t spin_ns_;
  int nthreads_ = 0;
  std::vector<std::thread> workers_;
  std::mutex mu_, job_mu_;
  std::condition_variable cv_, done_cv_;
  std::atomic<const std::function<void(int, int)>*> job_{nullptr};
  std::atomic<uint64_t> state_{0};  // generation << 16 | threads of the current job
  std::atomic<int> pending_{0};     // workers of the current job not yet finished
  std::atomic<int> sleepers_{0};    // workers asleep (or about to be) on cv_
  std::atomic<bool> caller_waits_{false}, quit_{false};
  std::exception_ptr error_;
  static thread_local bool in_job_;
};
thread_local bool Pool::in_job_ = false;

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n); }

void parallel_run(int nthreads, const std::function<void(int, int)>& fn) { pool().run(nthreads, fn); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t max_chunks = (n + grain - 1) / grain;
  int nt = static_cast<int>(std::min<int64_t>(num_threads(), max_chunks));
  if (nt <= 1) {
    fn(0, n);
    return;
  }
  pool().run(nt, [&](int tid, int t) {
    int64_t chunk = (n + t - 1) / t;
    int64_t b = tid * chunk, e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  });
}

}  // namespace ng
