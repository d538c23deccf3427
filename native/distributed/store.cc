// TCP rendezvous store (see store.h). Frames: request = cmd byte, u32 key length, key,
// u32 value length, value; reply = status byte (0 ok, 1 refused), u32 length, payload.
// The server is one thread polling every connection; a GET for a missing key is parked
// and answered when the key is set.
#include "distributed/store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "common.h"

namespace ng {
namespace dist {
namespace {

enum : char { kHello = 'H', kBye = 'B', kSet = 'S', kGet = 'G', kJoined = 'J', kDead = 'D' };

void put_u32(std::vector<char>& out, uint32_t v) {
  uint32_t n = htonl(v);
  const char* p = reinterpret_cast<const char*>(&n);
  out.insert(out.end(), p, p + 4);
}
uint32_t get_u32(const char* p) {
  uint32_t n;
  std::memcpy(&n, p, 4);
  return ntohl(n);
}
std::vector<char> frame(char cmd, const std::string& key, const std::vector<char>& val) {
  std::vector<char> out;
  out.push_back(cmd);
  put_u32(out, static_cast<uint32_t>(key.size()));
  out.insert(out.end(), key.begin(), key.end());
  put_u32(out, static_cast<uint32_t>(val.size()));
  out.insert(out.end(), val.begin(), val.end());
  return out;
}
std::vector<char> reply(char status, const std::string& payload) {
  std::vector<char> out;
  out.push_back(status);
  put_u32(out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}
bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}
std::string list_text(const std::set<int>& s) {
  std::string out;
  for (int r : s) out += (out.empty() ? "" : ",") + std::to_string(r);
  return out;
}
std::vector<int> parse_list(const std::vector<char>& v) {
  std::vector<int> out;
  std::string s(v.begin(), v.end()), cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(std::stoi(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  return out;
}

struct Conn {
  int fd;
  std::vector<char> in;
  int rank = -1;
  bool said_bye = false;
};

}  // namespace

StoreServer::StoreServer(const std::string& addr, int port, int world_size) : world_size_(world_size) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw Error(std::string("distributed: cannot create the store socket (") + std::strerror(errno) + ")");
  int one = 1;
  // SO_REUSEADDR: a fresh run may bind the port while the previous run's sockets sit in TIME_WAIT.
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  (void)addr;  // like torchrun's store, listen on every interface: other nodes reach MASTER_ADDR
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    int e = errno;
    ::close(listen_fd_);
    if (e == EADDRINUSE)
      throw Error("distributed: initProcessGroup: port " + std::to_string(port) +
                  " is in use (got EADDRINUSE binding the rendezvous store on rank 0; expected a free MASTER_PORT: "
                  "pick another port or stop the process holding it)");
    throw Error("distributed: initProcessGroup: cannot bind the store to port " + std::to_string(port) + " (" +
                std::strerror(e) + ")");
  }
  ::listen(listen_fd_, 128);
  if (::pipe2(wake_, O_CLOEXEC) != 0) throw Error("distributed: cannot create the store wake pipe");
  thread_ = std::thread([this] { serve(); });
}

StoreServer::~StoreServer() { shutdown(std::chrono::milliseconds(0)); }

void StoreServer::shutdown(std::chrono::milliseconds grace) {
  if (!thread_.joinable()) return;
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (live_.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop_ = true;
  char c = 1;
  (void)!::write(wake_[1], &c, 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void StoreServer::serve() {
  std::map<std::string, std::vector<char>> kv;
  std::multimap<std::string, int> parked;  // key -> fd waiting for it
  std::map<int, Conn> conns;
  std::set<int> joined, dead;
  auto close_conn = [&](int fd) {
    Conn& c = conns[fd];
    if (c.rank >= 0) {
      if (!c.said_bye) {
        dead.insert(c.rank);
        live_--;
      }
      joined.erase(c.rank);
    }
    for (auto it = parked.begin(); it != parked.end();) it = it->second == fd ? parked.erase(it) : std::next(it);
    ::close(fd);
    conns.erase(fd);
  };
  while (!stop_) {
    std::vector<pollfd> fds;
    fds.push_back({listen_fd_, POLLIN, 0});
    fds.push_back({wake_[0], POLLIN, 0});
    for (auto& kvp : conns) fds.push_back({kvp.first, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (fds[0].revents & POLLIN) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conns[fd] = Conn{fd, {}, -1, false};
      }
    }
    for (size_t i = 2; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      int fd = fds[i].fd;
      char buf[65536];
      ssize_t k = ::recv(fd, buf, sizeof(buf), 0);
      if (k <= 0) {
        close_conn(fd);
        continue;
      }
      Conn& c = conns[fd];
      c.in.insert(c.in.end(), buf, buf + k);
      bool closed = false;
      while (!closed) {
        if (c.in.size() < 5) break;
        uint32_t klen = get_u32(c.in.data() + 1);
        if (c.in.size() < 9 + klen) break;
        uint32_t vlen = get_u32(c.in.data() + 5 + klen);
        size_t total = 9 + size_t(klen) + vlen;
        if (c.in.size() < total) break;
        char cmd = c.in[0];
        std::string key(c.in.data() + 5, klen);
        std::vector<char> val(c.in.begin() + 9 + klen, c.in.begin() + total);
        c.in.erase(c.in.begin(), c.in.begin() + total);
        std::vector<char> out;
        switch (cmd) {
          case kHello: {
            int rank = std::stoi(key);
            int ws = std::stoi(std::string(val.begin(), val.end()));
            if (ws != world_size_) {
              out = reply(1, "distributed: initProcessGroup: world size mismatch (got worldSize " + std::to_string(ws) +
                                 " on rank " + std::to_string(rank) + "; expected " + std::to_string(world_size_) +
                                 " as on rank 0)");
            } else if (rank < 0 || rank >= world_size_) {
              out = reply(1, "distributed: initProcessGroup: rank out of range (got rank " + std::to_string(rank) +
                                 "; expected 0 <= rank < worldSize " + std::to_string(world_size_) + ")");
            } else if (joined.count(rank)) {
              out = reply(1, "distributed: initProcessGroup: rank " + std::to_string(rank) +
                                 " joined twice (got a second process with RANK=" + std::to_string(rank) +
                                 "; expected one process per rank)");
            } else {
              c.rank = rank;
              joined.insert(rank);
              dead.erase(rank);
              live_++;
              out = reply(0, "");
            }
            break;
          }
          case kBye:
            if (c.rank >= 0 && !c.said_bye) {
              c.said_bye = true;
              live_--;
            }
            out = reply(0, "");
            break;
          case kSet: {
            kv[key] = val;
            auto range = parked.equal_range(key);
            std::vector<char> r = reply(0, std::string(val.begin(), val.end()));
            for (auto it = range.first; it != range.second; ++it) send_all(it->second, r.data(), r.size());
            parked.erase(range.first, range.second);
            out = reply(0, "");
            break;
          }
          case kGet: {
            auto it = kv.find(key);
            if (it != kv.end()) out = reply(0, std::string(it->second.begin(), it->second.end()));
            else parked.emplace(key, fd);
            break;
          }
          case kJoined: out = reply(0, list_text(joined)); break;
          case kDead: out = reply(0, list_text(dead)); break;
          default: closed = true; break;
        }
        if (closed) {
          close_conn(fd);
          break;
        }
        if (!out.empty() && !send_all(fd, out.data(), out.size())) {
          close_conn(fd);
          closed = true;
        }
      }
    }
  }
  for (auto& kvp : conns) ::close(kvp.first);
}

StoreClient::StoreClient(const std::string& addr, int port, std::chrono::milliseconds timeout)
    : addr_(addr), port_(port), timeout_(timeout) {
  connect_until(std::chrono::steady_clock::now() + timeout);
}

StoreClient::~StoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string StoreClient::where() const { return addr_ + ":" + std::to_string(port_); }

void StoreClient::connect_until(std::chrono::steady_clock::time_point deadline) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = ::getaddrinfo(addr_.c_str(), std::to_string(port_).c_str(), &hints, &res);
  if (rc != 0 || !res)
    throw Error("distributed: initProcessGroup: cannot resolve MASTER_ADDR (got \"" + addr_ + "\": " +
                ::gai_strerror(rc) + "; expected a host name or IPv4 address)");
  std::string last = "no attempt";
  while (true) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      fd_ = fd;
      ::freeaddrinfo(res);
      return;
    }
    last = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::freeaddrinfo(res);
  throw Error("distributed: cannot reach the rendezvous store at " + where() + " (got " + last +
              " until the timeout; expected rank 0 to be listening there: is MASTER_ADDR/MASTER_PORT right and rank 0 running?)");
}

std::vector<char> StoreClient::request(char cmd, const std::string& key, const std::vector<char>& val,
                                       std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  // after a dropped connection (a timeout), later queries open a new one
  if (fd_ < 0) connect_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
  std::vector<char> f = frame(cmd, key, val);
  auto fail = [&](const std::string& why) -> std::runtime_error {
    ::close(fd_);
    fd_ = -1;
    return Error("distributed: rendezvous store at " + where() + ": " + why);
  };
  if (!send_all(fd_, f.data(), f.size())) throw fail("connection lost (rank 0, which hosts the store, has probably exited)");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<char> in;
  while (true) {
    if (in.size() >= 5 && in.size() >= 5 + get_u32(in.data() + 1)) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) throw fail("timed out after " + std::to_string(timeout.count()) + " ms waiting for key \"" + key + "\"");
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[65536];
    ssize_t k = ::recv(fd_, buf, sizeof(buf), 0);
    if (k <= 0) throw fail("connection lost (rank 0, which hosts the store, has probably exited)");
    in.insert(in.end(), buf, buf + k);
  }
  uint32_t n = get_u32(in.data() + 1);
  std::vector<char> payload(in.begin() + 5, in.begin() + 5 + n);
  if (in[0] != 0) throw Error(std::string(payload.begin(), payload.end()));
  return payload;
}

void StoreClient::hello(int rank, int world_size) {
  std::string ws = std::to_string(world_size);
  request(kHello, std::to_string(rank), std::vector<char>(ws.begin(), ws.end()), timeout_);
  rank_ = rank;
  world_size_ = world_size;
}
void StoreClient::bye() {
  if (fd_ < 0) return;
  try {
    request(kBye, "", {}, std::chrono::milliseconds(1000));
  } catch (...) {
  }
}
std::vector<int> StoreClient::joined() { return parse_list(request(kJoined, "", {}, timeout_)); }
std::vector<int> StoreClient::dead() { return parse_list(request(kDead, "", {}, std::chrono::milliseconds(1000))); }

void StoreClient::set(const std::string& key, const std::vector<char>& data) { request(kSet, key, data, timeout_); }
std::vector<char> StoreClient::get(const std::string& key) { return request(kGet, key, {}, timeout_); }
void StoreClient::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }
void StoreClient::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  for (const auto& k : keys) request(kGet, k, {}, timeout);
}

}  // namespace dist
}  // namespace ng
