"""Write ir_original.json into compiled-model directories made before compile wrote it, so that
`prunec lower DIR --hw FILE` can cost the original network again too and give the energy
reduction on another chip.

The original network is rebuilt from the zoo architecture report.json names and the weights of
the directory's exported original (model/original.pt2), and lowered as compile lowers it (zero
shares measured on the first calibration images, on the chip and with the options its ir.json
records). It is written only when it reproduces the
directory exactly: the same outputs as the exported original, and the energy report.json holds.

    python benchmarks/backfill_original_ir.py benchmarks/results/artifacts/*/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prunec.errors import UserError  # noqa: E402


def original_ir(directory: Path) -> dict:
    """The lowered IR of the original network of the compiled model in ``directory``."""
    import prunec
    from prunec import zoo
    from prunec.backends import get_target
    from prunec.backends.eyeriss.hardware import recorded_hardware
    from prunec.data import load_split
    from prunec.lowering import load_ir, measure_activation_sparsity
    from prunec.pipeline import CompileConfig, per_inference
    from prunec.report import input_normalization, load_report

    report = load_report(directory)
    model = report["model"]
    if not str(model["arch"]).startswith("zoo:"):
        raise UserError(f"{directory}: the original is {model['arch']}, not a zoo network this script can rebuild")
    net = zoo.build(model["arch"][4:], in_channels=model["input_shape"][1], num_classes=model["num_classes"])
    exported = prunec.load_compiled(directory / "model").original
    net.load_state_dict(exported.state_dict())
    net.eval()
    data = report["data"]["name"]
    norm = input_normalization(report)
    test, calib = (load_split(data, split, **norm) for split in ("test", "calibration"))
    with torch.no_grad():
        if not torch.equal(net(test.x[:64]), exported(test.x[:64])):
            raise UserError(f"{directory}: the rebuilt original does not compute what the exported one does")
    # on the chip and with the options the compile lowered with, as its ir.json records them
    dynamic = load_ir(directory / "ir.json")
    options = {k: dynamic["options"][k] for k in ("zero_gating", "rlc", "weight_sparsity")}
    x = test.x[:1].clone()
    gm = prunec.trace(net, x)
    sparsity = measure_activation_sparsity(gm, calib.x[: CompileConfig(data=data).sparsity_samples])
    program = get_target(dynamic["target"]).lower(gm, batch=report["batch"], hw=recorded_hardware(dynamic["hardware"]),
                                                  activation_sparsity=sparsity, **options)
    if per_inference(program) != report["energy"]["original"]:
        raise UserError(f"{directory}: the rebuilt original costs {per_inference(program):.6g}, report.json says "
                        f"{report['energy']['original']:.6g}; not written")
    return program.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="compiled-model directories")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from prunec.outdir import write_atomic

    for directory in args.dirs:
        if (directory / "ir_original.json").exists():
            print(f"{directory}: has ir_original.json already")
            continue
        try:
            ir = original_ir(directory)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        write_atomic(directory / "ir_original.json", json.dumps(ir, indent=1) + "\n")
        print(f"wrote {directory / 'ir_original.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
