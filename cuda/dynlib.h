// Opening a GPU library at run time (cuBLASLt, NCCL): no build-time dependency, so one
// binary loads on machines with or without it. Host code only.
#pragma once
#include <dlfcn.h>
#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace ng {
namespace dynlib {

// Resolves one entry point; false when the library lacks it.
template <class F>
bool sym(void* lib, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(lib, name));
  return *out != nullptr;
}

// dlopen with RTLD_LOCAL; null on failure, with the first failure's reason kept in *err.
inline void* open(const std::string& path, std::string* err) {
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib && err->empty()) {
    const char* e = dlerror();
    *err = e ? e : ("cannot open " + path);
  }
  return lib;
}

// Paths matching a glob pattern, newest version first (libx.so.13 before .so.12).
inline std::vector<std::string> glob_paths(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g;
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  globfree(&g);
  std::sort(out.rbegin(), out.rend());
  return out;
}

// site-packages roots where pip puts the nvidia-* wheels: the prefix of every python3 on
// PATH, the active venv / conda env, the user's, then the system's and /opt venvs.
inline std::vector<std::string> python_roots() {
  std::vector<std::string> prefixes;
  if (const char* path = std::getenv("PATH")) {
    const std::string p = path;
    for (size_t start = 0; start <= p.size();) {
      size_t end = p.find(':', start);
      if (end == std::string::npos) end = p.size();
      const std::string dir = p.substr(start, end - start);
      start = end + 1;
      if (dir.empty() || ::access((dir + "/python3").c_str(), X_OK) != 0) continue;
      const size_t slash = dir.find_last_of('/');
      if (slash != std::string::npos) prefixes.push_back(dir.substr(0, slash));  // ".../bin" -> "..."
    }
  }
  for (const char* env : {"VIRTUAL_ENV", "CONDA_PREFIX"})
    if (const char* v = std::getenv(env)) prefixes.push_back(v);
  std::vector<std::string> roots;
  for (const std::string& pre : prefixes) {
    roots.push_back(pre + "/lib/python3*/site-packages");
    roots.push_back(pre + "/lib/python3*/dist-packages");
  }
  if (const char* home = std::getenv("HOME")) roots.push_back(std::string(home) + "/.local/lib/python3*/site-packages");
  for (const char* r : {"/usr/lib/python3*/site-packages", "/usr/lib/python3*/dist-packages",
                        "/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
                        "/opt/*/.venv/lib/python3*/site-packages", "/opt/*/lib/python3*/site-packages"})
    roots.push_back(r);
  std::vector<std::string> uniq;
  for (auto& r : roots)
    if (std::find(uniq.begin(), uniq.end(), r) == uniq.end()) uniq.push_back(r);
  return uniq;
}

}  // namespace dynlib
}  // namespace ng
