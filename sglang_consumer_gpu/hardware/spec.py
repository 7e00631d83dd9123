"""The hardware description every decision is computed from, and the facts about
architectures that decisions and checks read from it (each written once, here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Shared memory a block may opt into, by SM version, from the CUDA C
# Programming Guide's "Technical Specifications per Compute Capability" table.
# Used only when a spec is built for a GPU that is neither present nor in the
# catalog (e.g. `--gpu sm_89`).
SMEM_OPTIN_BY_ARCH: dict[tuple[int, int], int] = {
    (7, 0): 98_304,
    (7, 5): 65_536,
    (8, 0): 166_912,
    (8, 6): 101_376,
    (8, 7): 166_912,
    (8, 9): 101_376,
    (9, 0): 232_448,
    (10, 0): 232_448,
    (10, 3): 232_448,
    (12, 0): 101_376,
    (12, 1): 101_376,
}


@dataclass(frozen=True)
class SmResources:
    """What one SM holds at once: the limits that decide how many blocks of a kernel
    are resident together (CUDA C Programming Guide, "Technical Specifications per
    Compute Capability"; the occupancy calculator's allocation rules).

    A Hopper SM holds 228 KB of shared memory, 64 warps and 32 blocks; an Ada SM
    100 KB, 48 warps and 24 blocks. So a tile that keeps two blocks per SM on an
    H100 keeps one on an RTX 4090, and timing it on the H100 times another
    schedule: the arch-faithful emulation pads each launch's shared memory until
    the host holds no more blocks than the target would (:func:`residency_padding`).
    Registers (64 K 32-bit registers per SM, 255 per thread) are the same on every
    architecture here, so register-limited residency needs no emulation.
    """

    shared_per_sm: int  # bytes of shared memory the SM gives its resident blocks (max carveout)
    reserved_per_block: int  # bytes the system reserves per resident block (1 KB from sm_80 on)
    max_warps: int
    max_blocks: int
    granularity: int = 128  # shared memory is allocated to a block in units of this many bytes

    def footprint(self, shared: int) -> int:
        """Shared memory one resident block takes from the SM for ``shared`` dynamic bytes."""
        need = shared + self.reserved_per_block
        return -(-need // self.granularity) * self.granularity

    def blocks_per_sm(self, shared: int, num_warps: int) -> int:
        """Blocks of a kernel (``shared`` bytes, ``num_warps`` warps) resident on one SM,
        by shared memory, warps and the block limit (0: the kernel does not fit at all)."""
        return min(self.max_blocks, self.max_warps // max(1, num_warps), self.shared_per_sm // self.footprint(shared))


#: Per-SM limits by SM version (same source as :data:`SMEM_OPTIN_BY_ARCH`).
SM_RESOURCES_BY_ARCH: dict[tuple[int, int], SmResources] = {
    (7, 0): SmResources(98_304, 0, 64, 32, granularity=256),
    (7, 5): SmResources(65_536, 0, 32, 16, granularity=256),
    (8, 0): SmResources(167_936, 1024, 64, 32),
    (8, 6): SmResources(102_400, 1024, 48, 16),
    (8, 7): SmResources(167_936, 1024, 48, 16),
    (8, 9): SmResources(102_400, 1024, 48, 24),
    (9, 0): SmResources(233_472, 1024, 64, 32),
    (10, 0): SmResources(233_472, 1024, 64, 32),
    (10, 3): SmResources(233_472, 1024, 64, 32),
    (12, 0): SmResources(102_400, 1024, 48, 32),
    (12, 1): SmResources(102_400, 1024, 48, 32),
}


def residency_padding(target: SmResources, host: SmResources, shared: int, num_warps: int) -> int:
    """The dynamic shared memory to launch a kernel with on ``host`` so that no more of
    its blocks are resident per SM than on ``target`` (``shared`` itself when the host
    already holds no more). The largest such value is taken: it leaves the most
    room for the rounding of the host's allocator."""
    want = target.blocks_per_sm(shared, num_warps)
    if want <= 0 or host.blocks_per_sm(shared, num_warps) <= want:
        return shared
    padded = host.shared_per_sm // want - host.reserved_per_block
    padded -= padded % host.granularity
    return max(shared, padded)


def pipelined_copies(capability: tuple[int, int], num_stages: int) -> int:
    """How many copies of a K loop's A and B tiles Triton's software pipeliner
    keeps in shared memory for ``num_stages``.

    mma.sync GPUs (sm_80/86/89/120) keep ``num_stages - 1`` (one at
    ``num_stages <= 2``); Hopper's wgmma and Blackwell's tcgen05 pipelines
    (majors 9 and 10) keep every stage. Keyed by capability rather than by a
    spec because the shared-memory model (``moe.smem.estimate_shared``) is asked
    about architectures as a whole.
    """
    if capability[0] in (9, 10):
        return max(1, num_stages)
    return max(1, num_stages - 1)


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model, as the plugin's decisions need to see it.

    ``name`` is spelled the way ``torch.cuda.get_device_name()`` reports it,
    because SGLang builds fused-MoE config file names from that string (spaces
    replaced by underscores).
    """

    name: str
    capability: tuple[int, int]
    smem_per_block_optin: int  # bytes a kernel may request per block
    sm_count: int
    memory_bytes: int
    memory_bandwidth_gbps: float  # GB/s (10^9 bytes/s), spec-sheet value
    source: str = "catalog"  # "catalog", "live", "arch", ...

    @property
    def arch(self) -> int:
        """SM version as one number (89 for sm_89), as Triton's GPUTarget wants it."""
        return self.capability[0] * 10 + self.capability[1]

    @property
    def arch_name(self) -> str:
        return f"sm_{self.arch}"

    @property
    def config_device_name(self) -> str:
        """The ``device_name=`` part of SGLang's fused-MoE config file names."""
        return self.name.replace(" ", "_")

    @property
    def sm_resources(self) -> SmResources | None:
        """What one SM of this GPU holds at once (None for an SM version not in the table)."""
        return SM_RESOURCES_BY_ARCH.get(self.capability)

    @property
    def is_low_smem(self) -> bool:
        """True for the ~99 KB-per-block class (sm_75/86/89/120) that SGLang's
        data-center tiles overflow."""
        return self.smem_per_block_optin < 128 * 1024

    @property
    def is_ampere_or_newer(self) -> bool:
        """sm_80 and newer: Triton pipelines loads with ``cp.async`` and has
        tensor-core dots for int8. Turing (sm_75) stages operands through shared
        memory differently (Lq=576 extend attention at 16x32 needs 102,400 bytes
        there), so shared-memory models fitted on Ampere+ do not bound it."""
        return self.capability >= (8, 0)

    @property
    def supports_fp8_e4m3(self) -> bool:
        """fp8 e4m3 from sm_89 on. Before that Triton refuses it ("type fp8e4nv not
        supported in this architecture"): no fp8_w8a8 fused-MoE kernel and no e4m3
        KV cache compiles on an RTX 3090 / A100 (e5m2 does)."""
        return self.capability >= (8, 9)

    @property
    def sgl_kernel_int8_tiles(self) -> str | None:
        """Which tiles sgl-kernel 0.4.10's ``int8_scaled_mm`` dispatches to on this
        architecture (csrc/gemm/int8_gemm_kernel.cu, strings confirmed in the
        installed ``common_ops.abi3.so``), or None where it raises ``No implemented
        int8_scaled_mm for current compute capability`` (sm_100/103/120/121, < sm_75)."""
        arch = self.arch
        if 75 <= arch < 80:
            return f"CUTLASS sm75 tiles for {self.arch_name} (fp16 output only)"
        if arch in (86, 89):
            return f"CUTLASS small-shared-memory tiles for {self.arch_name}"
        if 80 <= arch < 90:
            return f"CUTLASS sm80 tiles for {self.arch_name}"
        if arch == 90:
            return "CUTLASS 3.x sm90 tiles"
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["capability"] = list(self.capability)
        d["arch"] = self.arch_name
        return d

    @classmethod
    def for_arch(cls, major: int, minor: int) -> GpuSpec:
        """A generic spec for an SM version, for questions about an arch as a whole."""
        smem = SMEM_OPTIN_BY_ARCH.get((major, minor))
        if smem is None:
            raise ValueError(
                f"unknown compute capability {major}.{minor}; known: "
                + ", ".join(f"{a}.{b}" for a, b in sorted(SMEM_OPTIN_BY_ARCH))
            )
        return cls(
            name=f"generic sm_{major}{minor}",
            capability=(major, minor),
            smem_per_block_optin=smem,
            sm_count=0,
            memory_bytes=0,
            memory_bandwidth_gbps=0.0,
            source="arch",
        )

    # Kernel libraries built for this architecture: what SGLang's backend choices need
    # (docs/backends.md; line numbers are SGLang 0.5.23's).

    @property
    def has_fa3(self) -> bool:
        """sgl-kernel builds FlashAttention-3 (``flash_ops``) for sm_80/86/89 and sm_90a only
        (``sgl_kernel/flash_attn.py`` ``is_fa3_supported``: major 8 or 9); SGLang's ``fa3``
        backend asserts the same (``attention_registry.py:243``). Nothing for sm_75 or sm_12x."""
        return self.capability[0] in (8, 9)

    @property
    def has_fa3_mla(self) -> bool:
        """FA3's MLA kernels are Hopper-only: the ``fa3`` backend refuses MLA models below
        sm_90 ("FlashAttention v3 Backend requires SM>=80 and SM<=90")."""
        return self.capability[0] == 9

    @property
    def has_trtllm_gen(self) -> bool:
        """FlashInfer's trtllm-gen cubins (FMHA, MLA, fused MoE) exist for sm_100/sm_103 only;
        elsewhere they fail with "TllmGenFmhaRunner: Unsupported architecture"."""
        return self.capability[0] == 10

    @property
    def has_xqa(self) -> bool:
        """FlashInfer's XQA decode and FMHAv2 prefill, which SGLang's ``trtllm_mha`` backend
        runs on sm_90 and sm_120 (``trtllm_mha_backend.py:258,367``; accepted there by
        ``attention_hook.py:201,223``). Not built for sm_8x."""
        return self.capability[0] in (9, 12)

    @property
    def has_flashmla(self) -> bool:
        """FlashMLA's kernels are built for sm_90 and sm_100."""
        return self.capability[0] in (9, 10)

    @property
    def has_marlin(self) -> bool:
        """Marlin's weight-only GEMMs (dense and MoE, int4/fp4/fp8 weights) need sm_80+
        (``moe_wna16_marlin`` guards ``__CUDA_ARCH__ >= 800``)."""
        return self.capability >= (8, 0)
