// Rendezvous store for the process group: a small TCP key-value server that rank 0 hosts
// on MASTER_ADDR:MASTER_PORT (torchrun's TCPStore in spirit) and a client every rank
// holds, adapted to gloo's rendezvous::Store so connectFullMesh exchanges addresses
// through it. The server also tracks which rank each connection belongs to: a rank whose
// connection drops without a goodbye is recorded as dead, so a failed collective can
// name the rank that went away instead of only reporting a socket error.
#pragma once
#include <gloo/rendezvous/store.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ng {
namespace dist {

class StoreServer {
 public:
  // Binds and listens at once (so "port in use" is reported to the caller), then serves
  // on its own thread.
  StoreServer(const std::string& addr, int port, int world_size);
  ~StoreServer();
  // Waits until every connection that said hello has said goodbye or closed, up to
  // the deadline, then stops the server thread.
  void shutdown(std::chrono::milliseconds grace);

 private:
  void serve();
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int world_size_;
  std::thread thread_;
  std::atomic<int> live_{0};
  std::atomic<bool> stop_{false};
};

class StoreClient : public gloo::rendezvous::Store {
 public:
  StoreClient(const std::string& addr, int port, std::chrono::milliseconds timeout);
  ~StoreClient() override;
  // Registers this connection as `rank` of a group of `world_size`; throws the server's
  // refusal (world size mismatch, rank out of range, rank taken).
  void hello(int rank, int world_size);
  void bye();
  // Ranks that have joined / whose connection dropped without a goodbye.
  std::vector<int> joined();
  std::vector<int> dead();

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

  std::string where() const;

 private:
  std::vector<char> request(char cmd, const std::string& key, const std::vector<char>& val,
                            std::chrono::milliseconds timeout);
  void connect_until(std::chrono::steady_clock::time_point deadline);
  std::string addr_;
  int port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  int rank_ = -1, world_size_ = 0;
  std::mutex mu_;
};

}  // namespace dist
}  // namespace ng
