"""Where SGLang asks the GPU what it is, outside any kernel family: its device helpers.

Two parts of the plugin answer them for a GPU that is not the one in the machine: the virtual
GPU (:mod:`sglang_consumer_gpu.oracle.virtual`, for decisions and compiles on a CPU) and the
emulation (:mod:`sglang_consumer_gpu.emulation.hooks`, for a real run on another GPU). The
paths are written here, once.
"""

#: ``get_device_sm``'s NVML shortcut (``_get_device_sm_via_nvml``), used while torch.cuda is uninitialised.
SGLANG_COMMON = "sglang.srt.utils.common"
#: SGLang's JIT kernels' architecture probe (``_init_jit_cuda_arch_once``): the ``-arch`` they build for.
SGLANG_JIT_ARCH = "sglang.kernels.jit.utils.arch"
#: sgl-kernel's loader (``_get_compute_capability``): which of its libraries it loads.
SGL_KERNEL_LOADER = "sgl_kernel.load_utils"
