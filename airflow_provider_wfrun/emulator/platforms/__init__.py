"""
One module per emulated platform; :func:`airflow_provider_wfrun.emulator.app.build_app` mounts them all.

A platform module exposes ``NAME``, ``ROOT``, ``DIALECT`` (a :class:`~..core.Dialect`: error format,
status words, auth quirks) and ``routes(state) -> list[Route]`` built with
:func:`~..core.platform_route`, which adds statistics, fault injection and authentication. Adding a
platform is adding a module here; nothing else changes.
"""
