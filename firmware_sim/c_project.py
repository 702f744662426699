"""``write_project``: a self-contained C99 firmware project for one bundle and one target.

Why generate a project rather than a library: a firmware engineer wants a folder that builds with
one ``make`` and that they can read: the kernels (``c_src/``, this kit's own code), the model as
constants, the front-end tables, the detector settings and a ``main`` that streams PCM. The host
target builds with ``cc`` and reads standard input; the Cortex-M targets build with
``arm-none-eabi-gcc`` and a linker script whose memory is the target's budget, so a firmware that
does not fit fails to link; ``cortex-m4f`` also runs on QEMU's ``mps2-an386`` board.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from deploy.runtime.bundle import Bundle
from deploy.runtime.errors import KitError

from .budget import Budget, budget_for
from .c_emit import C_SOURCES, c_float_array, model_source
from .c_frontend import detector_source, frontend_scratch_floats, frontend_source, mel_rows
from .c_lower import LoweredModel, lower_model

COMMON_SOURCES = (
    "kws_kernels.c",
    "kws_kernels.h",
    "kws_frontend.c",
    "kws_frontend.h",
    "kws_detector.c",
    "kws_detector.h",
    "kws_main.c",
    "kws_platform.h",
)
#: Stack and newlib heap (semihosting stdio buffers) kept free above the static RAM.
STACK_HEAP_BYTES = 8 * 1024


@dataclass(frozen=True)
class FirmwareTarget:
    """How to compile for a core and the QEMU board that runs it (if any); memory comes from a ``Budget``."""

    name: str
    cflags: str
    qemu_machine: str | None = None

    @property
    def is_host(self) -> bool:
        return self.name == "host"


FIRMWARE_TARGETS: dict[str, FirmwareTarget] = {
    "host": FirmwareTarget("host", "-O2"),
    "cortex-m4f": FirmwareTarget(
        "cortex-m4f", "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2", "mps2-an386"
    ),
    "cortex-m7": FirmwareTarget("cortex-m7", "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16 -O2"),
    "cortex-m33": FirmwareTarget("cortex-m33", "-mcpu=cortex-m33 -mthumb -mfloat-abi=hard -mfpu=fpv5-sp-d16 -O2"),
}
#: Code and constant data beside the model's weights: kernels, front-end, newlib's printf and
#: semihosting (measured: 34 KB for a semihosting hello-world, about 45 KB for a built firmware).
FIRMWARE_CODE_BYTES = 48 * 1024
#: Static RAM beside the arena and the audio ring: detector history, newlib and stdio state (measured 2.5 KB), globals.
FIRMWARE_STATIC_BYTES = 4 * 1024


def firmware_target(name: str) -> FirmwareTarget:
    if name not in FIRMWARE_TARGETS:
        raise KitError(f"--target: unknown firmware target '{name}' (choose from {', '.join(FIRMWARE_TARGETS)})")
    return FIRMWARE_TARGETS[name]


def memory_estimate(model: LoweredModel, bundle: Bundle) -> dict[str, int]:
    """Flash and static RAM the firmware will need, before compiling (``arm-none-eabi-size`` measures them after)."""
    weights = sum(int(a.nbytes) for layer in model.layers for a in layer.arrays.values())
    config = bundle.feature_config
    mel_weights = len(mel_rows(config)[2])
    tables = (
        4
        * (
            2 * config.n_fft
            + mel_weights
            + config.n_mfcc * config.n_mels
            + 2 * config.shape[0] * config.shape[1]
            + int(np.prod(config.shape))
            + int(np.asarray(bundle.head_weight).size)
            + len(bundle.classes)
        )
        + 4 * config.n_mels
    )
    ring = 2 * config.n_samples
    return {
        "flash": weights + tables + FIRMWARE_CODE_BYTES,
        "static_ram": model.arena_bytes + ring + FIRMWARE_STATIC_BYTES,
        "stack_heap": STACK_HEAP_BYTES,
    }


def check_fits(model: LoweredModel, bundle: Bundle, budget: Budget, where: str) -> dict[str, int]:
    """Refuse, in one line and before anything is written, a firmware that cannot fit ``budget``'s memory."""
    need = memory_estimate(model, bundle)
    over = []
    if need["flash"] > budget.flash_bytes:
        over.append(f"flash ~{need['flash'] / 1024:.1f} KB > {budget.flash_bytes / 1024:.0f} KB")
    ram = need["static_ram"] + need["stack_heap"]
    if ram > budget.sram_bytes:
        over.append(
            f"RAM ~{ram / 1024:.1f} KB (arena {model.arena_bytes / 1024:.1f} KB, audio ring "
            f"{2 * bundle.feature_config.n_samples / 1024:.1f} KB, stack and heap {STACK_HEAP_BYTES // 1024} KB) "
            f"> {budget.sram_bytes / 1024:.0f} KB"
        )
    if over:
        raise KitError(
            f"{where}: the firmware does not fit {budget.name}: {'; '.join(over)}; choose a smaller model "
            "(kit models) or a larger part (--flash-kb/--sram-kb)"
        )
    return need


def _header(model: LoweredModel, bundle: Bundle) -> str:
    config = bundle.feature_config
    hop = int(round(bundle.detector.hop_s * config.sample_rate))
    return "\n".join(
        [
            "/* Generated by firmware_sim.c_project: "
            "sizes and tables shared by the firmware's sources. Do not edit. */",
            "#ifndef KWS_MODEL_H",
            "#define KWS_MODEL_H",
            "#include <stdint.h>",
            "",
            '#include "kws_detector.h"',
            '#include "kws_frontend.h"',
            "",
            f"#define KWS_SAMPLE_RATE {config.sample_rate}",
            f"#define KWS_WINDOW_SAMPLES {config.n_samples}",
            f"#define KWS_HOP_SAMPLES {hop}",
            f"#define KWS_N_CLASSES {len(bundle.classes)}",
            f"#define KWS_INPUT_SIZE {model.input.size}",
            f"#define KWS_EMBEDDING_SIZE {model.embedding.size}",
            f"#define KWS_EMBEDDING_SCALE {model.embedding_scale!r}f",
            f"#define KWS_EMBEDDING_ZERO_POINT {model.embedding_zero_point}",
            f"#define KWS_ARENA_BYTES {model.arena_bytes}",
            f"#define KWS_FRONTEND_SCRATCH_FLOATS {frontend_scratch_floats(config)}",
            "",
            "int8_t *kws_model_input(void);",
            "void kws_model_invoke(void);",
            "float *kws_model_scratch(void);",
            "const int8_t *kws_model_logits(void);",
            "const int8_t *kws_model_embedding(void);",
            "",
            "extern const char *const kws_labels[];",
            "extern const kws_detector_settings kws_detector_config;",
            "extern const kws_frontend_config kws_frontend_config_data;",
            "extern const float kws_head_weight[];",
            "extern const float kws_head_bias[];",
            "",
            "#endif",
            "",
        ]
    )


def _head_source(bundle: Bundle) -> str:
    return "\n".join(
        [
            "/* Generated by firmware_sim.c_project: the bundle's linear head (replaced by on-device fine-tuning). */",
            '#include "kws_model.h"',
            "",
            c_float_array("kws_head_weight", np.asarray(bundle.head_weight, np.float32), static=False),
            c_float_array("kws_head_bias", np.asarray(bundle.head_bias, np.float32), static=False),
            "",
        ]
    )


def scratch_place(model: LoweredModel, scratch_bytes: int) -> tuple[int, int]:
    """(offset, arena bytes): the front-end scratch in the arena's largest gap beside the model input,
    growing the arena only when no gap is big enough (16-byte aligned, like the planner's buffers)."""
    start, end = model.input.offset, model.input.offset + model.input.size
    if start >= scratch_bytes:  # the gap before the input is enough
        return 0, model.arena_bytes
    after = (end + 15) // 16 * 16
    return after, max(model.arena_bytes, after + scratch_bytes)


def _makefile(target: FirmwareTarget, n_classes: int) -> str:
    sources = (
        "kws_main.c kws_kernels.c kws_frontend.c kws_detector.c kws_model.c kws_frontend_data.c "
        "kws_detector_data.c kws_head.c"
    )
    if target.is_host:
        return "\n".join(
            [
                "# Host build: reads 16-bit PCM (or a KWSF feature file) on standard input.",
                "CC ?= cc",
                f"CFLAGS ?= -std=c99 -O2 -Wall -Wextra -DKWS_DETECTOR_MAX_CLASSES={n_classes}",
                f"SOURCES = {sources} kws_platform_host.c",
                "",
                "kws: $(SOURCES) $(wildcard *.h)",
                "\t$(CC) $(CFLAGS) -o $@ $(SOURCES) -lm",
                "",
                "run: kws",
                "\t./kws < $(INPUT)",
                "",
                "clean:",
                "\trm -f kws",
                "",
                ".PHONY: run clean",
                "",
            ]
        )
    qemu = target.qemu_machine
    lines = [
        f"# {target.name}: arm-none-eabi-gcc, semihosting I/O (newlib rdimon), memory per kws.ld.",
        "CC = arm-none-eabi-gcc",
        "SIZE = arm-none-eabi-size",
        f"CFLAGS = -std=c99 -Wall -Wextra {target.cflags} -ffunction-sections -fdata-sections "
        f"-DKWS_DETECTOR_MAX_CLASSES={n_classes}" + (" -DKWS_QEMU" if qemu else ""),
        "LDFLAGS = --specs=rdimon.specs -nostartfiles -T kws.ld -Wl,--gc-sections",
        f"SOURCES = {sources} kws_platform_cortexm.c startup_cortexm.c",
        "",
        "kws.elf: $(SOURCES) $(wildcard *.h) kws.ld",
        "\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SOURCES) -lc -lrdimon -lm",
        "",
        "size: kws.elf",
        "\t$(SIZE) -A -d kws.elf",
        "",
    ]
    if qemu:
        lines += [
            f"# QEMU {qemu}: the input file is read as ./input.pcm through semihosting.",
            "run: kws.elf",
            f"\tqemu-system-arm -M {qemu} -nographic -semihosting-config enable=on,target=native "
            "-icount shift=0 -kernel kws.elf",
            "",
        ]
    lines += ["clean:", "\trm -f kws.elf", "", ".PHONY: size run clean", ""]
    return "\n".join(lines)


def _linker_script(budget: Budget) -> str:
    text = (C_SOURCES / "cortexm.ld.in").read_text()
    return (
        text.replace("@FLASH_BYTES@", str(budget.flash_bytes))
        .replace("@RAM_BYTES@", str(budget.sram_bytes))
        .replace("@STACK_HEAP_BYTES@", str(STACK_HEAP_BYTES))
    )


def _readme(
    target: FirmwareTarget, budget: Budget | None, bundle_path: str, model: LoweredModel, bundle: Bundle
) -> str:
    board_files = (
        f", `startup_cortexm.c` + `kws.ld` (vector table, memory: {budget.flash_bytes // 1024} KB flash, "
        f"{budget.sram_bytes // 1024} KB RAM)"
        if budget
        else ""
    )
    run = (
        "`make && ./kws < audio.pcm` (16-bit little-endian mono PCM at "
        f"{bundle.feature_config.sample_rate} Hz, e.g. `sox clip.wav -t raw -e signed -b 16 -c 1 - | ./kws`)"
        if target.is_host
        else "`make` then `make run` with the PCM in `./input.pcm` (QEMU board `%s`)" % target.qemu_machine
        if target.qemu_machine
        else "`make` and flash `kws.elf` with your board's tools (I/O through semihosting)"
    )
    return f"""# Keyword-spotting firmware ({target.name})

Generated by `kit firmware build` from `{os.path.basename(bundle_path)}`: classes {", ".join(bundle.classes)};
front-end {bundle.feature_config.kind} {bundle.feature_config.shape}; static arena {model.arena_bytes} bytes.

Run: {run}.

It prints one line per detection, `t=1.20s yes 0.91` (stream time at the end of the window, label,
averaged score), and at the end the model's and the front-end's cost per inference: CPU cycles on a
board (SysTick), instructions on QEMU (`-icount shift=0`: not device time), wall-clock ns on the host.
An input starting with `KWSF` holds int8 model inputs instead (uint32 count, then the inputs), and
the firmware prints each one's int8 logits and embedding.

Files: `kws_kernels.c` (int8 kernels, TensorFlow Lite Micro reference arithmetic; this kit's own
code; `-DUSE_CMSIS_NN` is reserved for a CMSIS-NN back-end that is not implemented), `kws_model.c`
(weights, requantisation multipliers and shifts, arena offsets, the layer sequence), `kws_frontend.c`
+ `kws_frontend_data.c` (the training front-end in float32), `kws_detector.c` + `kws_detector_data.c`
(RecognizeCommands with the bundle's settings), `kws_head.c` (the bundle's linear head),
`kws_main.c` (the stream loop){board_files}.
"""


def write_project(
    bundle_path: str | os.PathLike,
    target_name: str,
    out: str | os.PathLike,
    model_name: str | None = None,
    *,
    flash_bytes: int | None = None,
    sram_bytes: int | None = None,
) -> Path:
    """Write the C project for ``bundle_path``'s int8 TFLite model into ``out`` (a new or generated folder).

    Cortex-M targets take their memory from firmware_sim's profile of the part (``flash_bytes`` /
    ``sram_bytes`` override it); a firmware that cannot fit is refused before anything is written.
    """
    target = firmware_target(target_name)
    bundle = Bundle.load(bundle_path)
    model = lower_model(bundle, str(bundle_path), model_name)
    scratch_offset, model.arena_bytes = scratch_place(model, 4 * frontend_scratch_floats(bundle.feature_config))
    budget = None
    if not target.is_host:
        budget = budget_for(target.name, bundle.detector.hop_s * 1000, flash_bytes=flash_bytes, sram_bytes=sram_bytes)
        check_fits(model, bundle, budget, str(bundle_path))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KitError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "firmware.json").is_file():
        raise KitError(f"--out {out}: folder is not empty and was not made by kit firmware build; choose a new folder")
    tmp = out.with_name(out.name + ".tmp-build")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    platform = ["kws_platform_host.c"] if target.is_host else ["kws_platform_cortexm.c", "startup_cortexm.c"]
    for name in (*COMMON_SOURCES, *platform):
        shutil.copyfile(C_SOURCES / name, tmp / name)
    files = {
        "kws_model.h": _header(model, bundle),
        "kws_model.c": model_source(
            model.layers, model.arena_bytes, model.input, model.logits, model.embedding, scratch_offset
        ),
        "kws_frontend_data.c": frontend_source(
            bundle.feature_config,
            bundle.normalizer,
            model.input_scale,
            model.input_zero_point,
            model.input_axes,
            str(bundle_path),
        ),
        "kws_detector_data.c": detector_source(bundle.classes, bundle.detector),
        "kws_head.c": _head_source(bundle),
        "Makefile": _makefile(target, len(bundle.classes)),
        "README.md": _readme(target, budget, str(bundle_path), model, bundle),
    }
    if budget is not None:
        files["kws.ld"] = _linker_script(budget)
    for name, text in files.items():
        (tmp / name).write_text(text)
    record = {
        "bundle": str(bundle_path),
        "model": model.name,
        "target": asdict(target),
        "memory": asdict(budget) if budget else None,
        "estimate": memory_estimate(model, bundle),
        "arena_bytes": model.arena_bytes,
        "classes": list(bundle.classes),
        "feature_config": bundle.feature_config.to_dict(),
        "detector": bundle.detector.to_dict(),
    }
    (tmp / "firmware.json").write_text(json.dumps(record, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
