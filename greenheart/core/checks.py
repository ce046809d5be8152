"""Validators for the public inputs that several classes share."""

from __future__ import annotations

import attrs

#: a whole number, 0 or more
COUNT = attrs.validators.and_(attrs.validators.instance_of(int), attrs.validators.ge(0))

#: a whole number, 0 or more, or None for no limit
OPTIONAL_COUNT = attrs.validators.optional(COUNT)
