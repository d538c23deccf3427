// Thread pool: workers sleep on a condition variable; a job is one function called
// with (tid, nthreads). Jobs are serialised by a mutex: kernels are launched from the
// JavaScript thread only, one at a time; nested parallel calls run inline.
// An exception thrown by any thread of a job (a failed scratch allocation, say) is kept
// and rethrown on the calling thread once every thread has left the job, so the job's
// stack frame outlives all its users and no exception ever ends a worker thread.
#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ng {
namespace {

class Pool {
 public:
  Pool() { resize(default_threads()); }
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
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = false;
      gen = generation_;
    }
    // New workers start from the current generation so they do not run a finished job.
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { loop(i, gen); });
  }

  void run(int nt, const std::function<void(int, int)>& fn) {
    nt = std::max(1, std::min(nt, nthreads_));
    if (nt == 1 || in_job_) {
      fn(0, 1);
      return;
    }
    std::lock_guard<std::mutex> job_lock(job_mu_);
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &fn;
      job_threads_ = nt;
      pending_ = nt - 1;
      ++generation_;
    }
    cv_.notify_all();
    in_job_ = true;
    try {
      fn(0, nt);
    } catch (...) {
      keep_error(std::current_exception());
    }
    in_job_ = false;
    std::exception_ptr err;
    {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [this] { return pending_ == 0; });
      job_ = nullptr;
      err = error_;
      error_ = nullptr;
    }
    if (err) std::rethrow_exception(err);
  }

 private:
  void loop(int tid, uint64_t seen) {
    for (;;) {
      const std::function<void(int, int)>* job;
      int nt;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        job = job_;
        nt = job_threads_;
      }
      if (tid < nt) {
        in_job_ = true;
        try {
          (*job)(tid, nt);
        } catch (...) {
          keep_error(std::current_exception());
        }
        in_job_ = false;
        std::lock_guard<std::mutex> lk(mu_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }
  // The first exception of a job wins; later ones are dropped.
  void keep_error(std::exception_ptr e) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!error_) error_ = e;
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int nthreads_ = 0;
  std::vector<std::thread> workers_;
  std::mutex mu_, job_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_threads_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
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
