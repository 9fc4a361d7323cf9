"""Log lines that tell an operator nothing, dropped where they are logged."""

import logging


class KombuNoHostname(logging.Filter):
    """kombu says "No hostname was supplied. Reverting to default 'localhost'" at each connection to a broker URL
    without a host: the file-system broker of `make run` has none, by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No hostname was supplied")
