"""Build and install reactor.

The C accelerator (``_native/``, cffi out-of-line API mode) is optional: without
a C compiler the build warns and installs the pure-Python package, which has
the same behaviour. ``REACTOR_NATIVE=1`` at build time makes a failed compile
fatal, so CI cannot pass on the fallback by accident.
"""

from setuptools import find_packages, setup

PEERS = ["uvloop", "tornado", "twisted", "trio"]

setup(
    name="reactor",
    version="0.1.0",
    description="A selectors-based reactor: non-blocking accept and connect, with a C accept-drain accelerator",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["reactor", "reactor.*"]),
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15"],
    cffi_modules=["_native/build.py:ffibuilder"],
    extras_require={
        # pytest-timeout: a hung socket test must fail, not hang CI for 90 min
        "test": ["pytest>=7", "pytest-benchmark>=4", "pytest-timeout>=2"],
        "lint": ["ruff>=0.4"],
        "plot": ["matplotlib>=3.5"],
        "peers": PEERS,
    },
    entry_points={"console_scripts": ["reactor=reactor.tools.cli:main"]},
    zip_safe=False,
)
