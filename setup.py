"""The C extension; everything else is in pyproject.toml.

`hlgateway.server._delivery` (src/hlgateway/server/_delivery.c) is built by the
install with the system compiler. It is optional: without a compiler the
install still succeeds and server/delivery.py's Python loops run instead
(`HLGATEWAY_BUILD_EXTENSION=yes` makes a failed build an error,
`HLGATEWAY_BUILD_EXTENSION=no` skips it).
"""

import os

from setuptools import Extension, setup

build = os.environ.get("HLGATEWAY_BUILD_EXTENSION", "").strip().lower()
ext_modules = []
if build != "no":
    ext_modules.append(
        Extension(
            "hlgateway.server._delivery",
            sources=["src/hlgateway/server/_delivery.c"],
            extra_compile_args=["-O2", "-Wall"],
            optional=build != "yes",
        )
    )

setup(ext_modules=ext_modules)
