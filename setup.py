"""The compiled part of the package; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tongcha.ledger._native",
            ["src/tongcha/ledger/_native.c"],
            libraries=["crypto"],  # OpenSSL's, as Python's own hashlib links it
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"],
        )
    ]
)
