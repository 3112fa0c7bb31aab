"""edgerec: PaddleX-compatible text-line recognition on OpenVINO for Intel edge devices."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="edgerec",
    version="0.1.0",
    description="Text-line recognition (OCR) for Intel edge devices: PP-OCR on OpenVINO, INT8 with NNCF",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["edgerec", "edgerec.*"]) + ["edgerec._models"],
    package_dir={"edgerec._models": "models"},
    package_data={"edgerec._models": ["*.yaml"]},
    install_requires=[
        "openvino==2026.4.1",
        "nncf==3.4.0",
        "numpy>=1.24,<2.5",
        "opencv-python-headless==5.0.0.93",
        "paddle2onnx==2.0.1",
        "onnx==1.23.2",
        "click>=8.1",
        "pyyaml>=6.0",
        "pillow>=10",
        "pypdfium2>=4.30",
        "requests>=2.31",
        "tqdm>=4.66",
        "filelock>=3.12",
        "rapidfuzz>=3.6",
        "mplfonts==0.0.11",
        "matplotlib>=3.8",
    ],
    extras_require={
        "onnxruntime": ["onnxruntime==1.32.0"],
        "paddle": ["paddlepaddle==3.3.1"],
        # fine-tuning (edgerec train): torch is pinned so that pip takes a CPU build where one is on offer (the
        # registry's own torch wheel is the CUDA build and pulls several GB of nvidia packages); onnx2torch
        # brings a torchvision that a CPU torch cannot import, which edgerec never needs (it stubs it)
        "train": ["torch==2.13.0", "onnx2torch==1.5.15", "onnxruntime==1.32.0"],
        # Ray Data for predict --ray and edgerec.integrations.ray (pinned: its Data API moves between releases);
        # (no Ray Client: Ray Data does not run through it, see docs/scale.md)
        "ray": ["ray[data]==2.60.0"],
        "dev": ["onnxruntime==1.32.0", "pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": ["edgerec=edgerec.cli:run"]},
)
