"""The package list, with the repository's top-level `configs/` installed as `continual/configs`.

Everything else is in pyproject.toml. This file exists because pyproject.toml cannot combine
automatic package discovery with a package that lives in another folder (`package-dir`).
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["continual", "continual.*"]) + ["continual.configs"],
    package_dir={"continual.configs": "configs"},
)
