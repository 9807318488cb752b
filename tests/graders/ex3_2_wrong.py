"""Exercise 3.2, plausible but wrong: the Dockerfile is the reference's for the default spec, with the port
hard-coded to 8000 in EXPOSE, HEALTHCHECK and CMD, so a spec with another port gets a container that
listens, and is probed, on the wrong one."""

from dataclasses import replace

from ch03_env.solutions.ex3_2_dockerize import ServiceSpec, write_context  # noqa: F401
from ch03_env.solutions.ex3_2_dockerize import render_dockerfile as _reference


def render_dockerfile(spec):
    return _reference(replace(spec, port=8000))
