"""One GPU emulated on another, as data: what is faithful and what is not.

A consumer GPU runs other kernel code than a data-center GPU, not just the same
code under a smaller limit. On sm_90 Triton lowers ``tl.dot`` to Hopper's
warp-group MMA (wgmma) and keeps every pipeline stage in shared memory; on
sm_80/86/89 it emits ``mma.sync`` and keeps one stage fewer, so SGLang's fused
MoE 128x128x128 in 4 stages asks for 262,144 B as sm_90 code and 196,608 B as
sm_89 code. An Ada SM holds 100 KB, 48 warps and 24 blocks where a Hopper SM
holds 228 KB, 64 and 32, so a tile that keeps two blocks per SM on an H100
keeps one on an RTX 4090.

:class:`ArchEmulation` describes running the target's code on the host:
Triton's MLIR passes run for the target (``TRITON_OVERRIDE_ARCH``, read by
``CUDABackend.parse_options``) while PTX and cubin are still built for the
host; launches are checked against the target's shared memory per block and
padded so the host keeps no more blocks per SM than the target would. It is a
pure function of two specs; :mod:`sglang_consumer_gpu.emulation` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_consumer_gpu.hardware.spec import GpuSpec, SmResources, residency_padding

#: Host SM versions on which another architecture's Triton code generation was run and checked
#: against torch (docs/emulation.md, ``scripts/device/emulation_check.py``): the target capabilities
#: each one runs. On an H100 (Triton 3.6) sm_80 to sm_89 and sm_120 code is ``mma.sync``, valid on
#: Hopper, and gave torch's results; sm_120's cubins were byte-for-byte the size of sm_89's.
RUNS_CODE_OF: dict[tuple[int, int], frozenset[tuple[int, int]]] = {
    (9, 0): frozenset({(8, 0), (8, 6), (8, 7), (8, 9), (9, 0), (12, 0)}),
}


@dataclass(frozen=True)
class ArchEmulation:
    """``target`` (a catalog GPU) emulated on ``host`` (the live GPU, its real spec)."""

    target: GpuSpec
    host: GpuSpec

    @property
    def override_arch(self) -> str:
        """The value of ``TRITON_OVERRIDE_ARCH`` that makes Triton generate the target's code."""
        return f"sm{self.target.arch}"

    @property
    def sm_count(self) -> int:
        """SMs reported to torch, Triton and SGLang: the target's, never more than the host has."""
        return min(self.target.sm_count, self.host.sm_count) if self.host.sm_count else self.target.sm_count

    def refusal(self) -> str:
        """Why the host cannot emulate the target ("" when it can)."""
        t, h = self.target, self.host
        runs = RUNS_CODE_OF.get(h.capability)
        if runs is None:
            return (
                f"arch-faithful emulation runs on an sm_90 GPU (H100, H200); this {h.name} is {h.arch_name}: "
                "use --smem to emulate only the shared-memory limit"
            )
        if t.capability not in runs:
            return (
                f"{h.arch_name} cannot run {t.arch_name} code ({t.name}): Triton's {t.arch_name} code "
                "generation is not valid there (docs/emulation.md); use --smem to emulate only its "
                f"shared-memory limit ({t.smem_per_block_optin} B)"
            )
        tr, hr = t.sm_resources, h.sm_resources
        if tr is None or hr is None:
            return f"no per-SM limits are known for {t.arch_name} or {h.arch_name}"
        if t.smem_per_block_optin > h.smem_per_block_optin or any(
            getattr(tr, f) > getattr(hr, f) for f in ("shared_per_sm", "max_warps", "max_blocks")
        ):
            return f"{t.name} holds more per SM or per block than this {h.name}: padding cannot add resources"
        return ""

    def padded_shared(self, shared: int, num_warps: int, host: SmResources | None = None) -> int:
        """Dynamic shared memory to launch a kernel with so that the host keeps no more of its
        blocks per SM than the target would (``host``: the SM limits of the GPU the kernel was
        built for, when the caller knows them better than the spec)."""
        tr, hr = self.target.sm_resources, host or self.host.sm_resources
        if tr is None or hr is None:
            return shared
        return residency_padding(tr, hr, shared, num_warps)

    def live_spec(self) -> GpuSpec:
        """The spec the plugin decides for: the target's, with the memory the host really has."""
        return GpuSpec(
            name=self.target.name,
            capability=self.target.capability,
            smem_per_block_optin=self.target.smem_per_block_optin,
            sm_count=self.sm_count,
            memory_bytes=self.host.memory_bytes or self.target.memory_bytes,
            memory_bandwidth_gbps=self.target.memory_bandwidth_gbps,
            source=f"emulated on {self.host.name}",
        )

    def not_emulated(self) -> list[str]:
        """What still differs from the target, for the first log line and ``doctor``."""
        t, h = self.target, self.host
        out = [
            f"memory bandwidth ({h.memory_bandwidth_gbps:,.0f} GB/s here, {t.memory_bandwidth_gbps:,.0f} GB/s "
            f"on the {t.name})",
            "clocks",
            "L2 size",
            f"memory size ({h.memory_bytes / 2**30:.0f} GiB here)",
            "CUDA kernels in sgl-kernel, FlashInfer and torch, which check the real capability and run "
            f"their {h.arch_name} code",
        ]
        if t.sm_count != h.sm_count:
            out.insert(
                2,
                f"SM count (kernels run on all {h.sm_count} SMs; {self.sm_count} are reported)"
                if t.sm_count < h.sm_count
                else f"SM count ({t.sm_count} on the {t.name}, {h.sm_count} here)",
            )
        return out

    def describe(self) -> str:
        """One line: what is emulated, and what is not."""
        t = self.target
        r = t.sm_resources
        per_sm = f"{r.shared_per_sm // 1024} KB, {r.max_warps} warps, {r.max_blocks} blocks per SM" if r else "?"
        return (
            f"emulating {t.name} on {self.host.name}: {t.arch_name} code generation, "
            f"{t.smem_per_block_optin:,} B shared memory per block, residency {per_sm}, "
            f"name/capability/{self.sm_count} SMs as torch and SGLang see them; "
            f"NOT emulated: {'; '.join(self.not_emulated())}"
        )
