"""What another app adds to a project's page, registered by that app when it starts (training's
`AppConfig.ready`), as `curation.datasets.hooks` does for a dataset's pages: curation imports no other app, so the
project page asks its extensions for their part. Each part is template context; the page's template includes the
extension's partial where that context is present."""

from typing import Protocol

from curation.models import Membership


class ProjectPageExtension(Protocol):
    def settings_context(self, *, membership: Membership) -> dict:
        """What the project page shows of this extension's settings, to the member `membership` is."""
        ...


_extensions: list[ProjectPageExtension] = []


def project_page_extend(extension: ProjectPageExtension) -> None:
    """Add `extension` to the project page (once; a second registration of an equal one is ignored)."""
    if extension not in _extensions:
        _extensions.append(extension)


def project_page_extensions() -> tuple[ProjectPageExtension, ...]:
    return tuple(_extensions)
