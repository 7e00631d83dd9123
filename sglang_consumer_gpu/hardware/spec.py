"""The hardware description every decision is computed from."""

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
    def is_low_smem(self) -> bool:
        """True for the ~99 KB-per-block class (sm_75/86/89/120) that SGLang's
        data-center tiles overflow."""
        return self.smem_per_block_optin < 128 * 1024

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
