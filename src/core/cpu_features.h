// CPU identification and ISA features found at run time (kernels dispatch on these).
#pragma once

#include <string>
#include <vector>

namespace anvil {

struct CpuFeatures {
  std::string model_name;
  int logical_cores = 1;  // cores this process may use
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512_vnni = false, avx512_bf16 = false,
       avx512_fp16 = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;

  std::vector<std::string> names() const;  // the features present, e.g. {"avx2", "avx512f", ...}
};

const CpuFeatures& cpu_features();

}  // namespace anvil
