"""The third route to T = 1 (issue 15): ReLU ANN → QCFS with L = 1 → fine-tune as an ANN → convert at T = 1.

    python bench/qcfs_l1_route.py                       # notebook 05's 8-epoch ANN, 2,000 training images
    python bench/qcfs_l1_route.py --epochs 2,10

At T = 1 with V[0] = θ/2 an IF neuron fires iff z ≥ θ/2 and sends θ: QCFS with L = 1 and λ_clip = θ. So
`convert.relu_to_qcfs` (λ_clip per layer from the MSE search at T = 1) → `train.train_ann` (SGD, OneCycle peak
lr 0.02) → `convert(threshold="bound", v_init=0.5)` gives a T = 1 SNN that answers exactly as the QCFS ANN.
Prints the ReLU ANN's accuracy, the start (equal to the "mse" SNN at T = 1), and after each budget the QCFS
ANN's and the SNN's accuracy and on how many test images their answers agree. Nothing is cached.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snnlab.convert import convert, relu_to_qcfs  # noqa: E402
from snnlab.data import get_loaders  # noqa: E402
from snnlab.simulate import evaluate_snn, simulate  # noqa: E402
from snnlab.train import evaluate, prepare, seed_everything, train_ann  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="2", help="fine-tuning budgets, comma-separated (default 2)")
    parser.add_argument("--ann-epochs", type=int, default=8, help="of the ReLU ANN (notebooks 01–05: 8)")
    parser.add_argument("--ann-train-size", type=int, default=5000)
    parser.add_argument("--train-size", type=int, default=2000, help="fine-tuning images (notebook 05: 2000)")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args(argv)
    seed_everything(0)
    ann, _, calibration, test_loader = prepare(dataset="cifar10", model="vgg-mini", epochs=args.ann_epochs,
                                               train_size=args.ann_train_size, calibration=500,
                                               test_size=args.test_size, seed=0, progress=False)
    mse = convert(ann, calibration, threshold="mse", timesteps=1, v_init=0.5, max_samples=50_000)
    start = relu_to_qcfs(ann, calibration, levels=1, max_samples=50_000)
    print(f"ReLU ANN {evaluate(ann, test_loader):.2f} % on {len(test_loader.y)} test images; λ_clip per layer",
          [round(m.bound.item(), 3) for m in start.modules() if hasattr(m, "levels")])
    print(f"QCFS L = 1 before fine-tuning {evaluate(start, test_loader):.2f} %, "
          f"mse@0.5 SNN at T = 1 {evaluate_snn(mse, test_loader, 1, progress=False)[-1].item():.2f} %", flush=True)
    for epochs in [int(e) for e in args.epochs.split(",")]:
        seed_everything(0)
        qcfs = relu_to_qcfs(ann, calibration, levels=1, max_samples=50_000)
        train_loader, _ = get_loaders("cifar10", batch_size=64, train_size=args.train_size, seed=0)
        began = time.time()
        train_ann(qcfs, train_loader, epochs=epochs, lr=args.lr, progress=False)
        seconds = time.time() - began
        qcfs.eval()
        snn = convert(qcfs, calibration, threshold="bound", v_init=0.5, max_samples=50_000)
        with torch.no_grad():
            same = sum(int((qcfs(x).argmax(1) == simulate(snn, x, 1)[-1].argmax(1)).sum()) for x, _ in test_loader)
        print(f"{epochs} epochs on {args.train_size} images, batch 64, peak lr {args.lr} ({seconds:.0f} s): QCFS ANN "
              f"{evaluate(qcfs, test_loader):.2f} %, SNN at T = 1 "
              f"{evaluate_snn(snn, test_loader, 1, progress=False)[-1].item():.2f} %, "
              f"same answer on {same}/{len(test_loader.y)} images", flush=True)


if __name__ == "__main__":
    main()
