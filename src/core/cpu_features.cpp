// CPUID-based feature detection (with the OS's XSAVE support checked for AVX/AVX-512 state).
#include "core/cpu_features.h"

#include <cpuid.h>

#include <fstream>

#include "core/thread_pool.h"

namespace anvil {
namespace {

bool bit(unsigned value, int index) { return (value >> index) & 1u; }

std::string read_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

CpuFeatures detect() {
  CpuFeatures f;
  f.model_name = read_model_name();
  f.logical_cores = default_thread_count();
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = bit(ecx, 27);
  f.fma = bit(ecx, 12);
  f.f16c = bit(ecx, 29);
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  f.avx2 = os_avx && bit(ebx, 5);
  f.fma = f.fma && os_avx;
  f.f16c = f.f16c && os_avx;
  f.avx512f = os_avx512 && bit(ebx, 16);
  f.avx512bw = os_avx512 && bit(ebx, 30);
  f.avx512vl = os_avx512 && bit(ebx, 31);
  f.avx512_vnni = os_avx512 && bit(ecx, 11);
  f.avx512_fp16 = os_avx512 && bit(edx, 23);
  f.amx_bf16 = os_amx && bit(edx, 22);
  f.amx_tile = os_amx && bit(edx, 24);
  f.amx_int8 = os_amx && bit(edx, 25);
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) f.avx512_bf16 = os_avx512 && bit(eax, 5);
  return f;
}

}  // namespace

std::vector<std::string> CpuFeatures::names() const {
  std::vector<std::string> out;
  auto add = [&](bool present, const char* name) {
    if (present) out.emplace_back(name);
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512_vnni, "avx512_vnni");
  add(avx512_bf16, "avx512_bf16");
  add(avx512_fp16, "avx512_fp16");
  add(amx_tile, "amx_tile");
  add(amx_bf16, "amx_bf16");
  add(amx_int8, "amx_int8");
  return out;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace anvil
