"""Generated specs for the property that `compute-dev spec check`, `compute_ctl -S` and
`POST /configure` give one verdict: hypothesis strategies built from the JSON Schema that
`compute-dev spec schema` exports, applied as mutations of a valid spec.

A random instance of the schema is almost always refused for the same trivial reason (no
pageserver, no safekeepers, no tenant), so the specs start from a valid base (one of the four
ways a spec can say where its storage is) and get zero to three mutations:

- schema-driven: at any place of the document the schema knows (a present field, a missing
  optional one, a new array item), a value drawn from that place's subschema, a value of a type
  the subschema does not allow or just outside its bounds, or the field deleted;
- targeted, at what resolution has to decide: `prefer_protocol: "grpc"` without a `grpc_url`, a
  pageserver without its `libpq_url`, shard maps with a shard missing or misnumbered, reserved
  and odd role and database names, lone surrogates in any string, LSNs with whitespace,
  duplicate safekeepers, the settings fallbacks, deep nesting;
- on the text: a duplicate key, `NaN`, a cut-off document.

Two things are left out on purpose, because the channels are *meant* to differ there:

- a top-level `compute_ctl_config` key makes `spec check` read the file as a ComputeConfig
  (what `-c` is given), while `-S` reads a bare ComputeSpec, so unknown keys are named `x_…`;
- nesting exactly at the decoder's bound: `/configure` carries the spec one level down inside
  its request body, so a spec whose deepest container is level 127 passes as a file and is
  refused as a body (the bound is the control plane's decoder's, for the whole document).
  Generated nesting stays clear of that level on both sides; the unit test pins the one level.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from compute_ctl.spec.load import MAX_DEPTH
from compute_dev.commands.spec import spec_schema

SCHEMA: dict[str, Any] = spec_schema()
DEFS: dict[str, Any] = SCHEMA["$defs"]

JSON = Any
Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True)
class Addresses:
    """Where the base specs say the storage is. Nothing needs to listen there: the verdicts
    are decided before any connection is made."""

    libpq_url: str
    grpc_url: str
    safekeepers: tuple[str, ...]
    tenant_id: str
    timeline_id: str
    settings: tuple[tuple[str, str], ...] = ()  # (name, value) pairs every spec carries


OFFLINE = Addresses(
    libpq_url="postgres://no_user@127.0.0.1:1",
    grpc_url="grpc://127.0.0.1:1",
    safekeepers=("127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"),
    tenant_id="1f359dd625e519a1a4e8d7509690f6fc",
    timeline_id="de200bd42b49cc1814412c7e592dd6e9",
)

FORMS = ("libpq", "grpc", "legacy", "guc")

# Values a spec really holds, so that a drawn string is often one resolution has an opinion on.
NAMES = ("alice", "bob", "app", "neon_superuser", "postgres", "cloud_admin", "Public", "PG_up")
RESERVED = ("pg_x", "pg_", "pg_monitor", "public", "none")
LSNS = ("0/16B5A50", "0/1", " 0/1 ", "0/16B5A50\n", "\t0/1", "0/1 x", "1/", "FFFFFFFF/FFFFFFFF")
SURROGATES = ("\ud800", "\udfff", "x\udc00", "\udbffx")
ODD = ("", " ", "\x00", "a\x00b", "\n", "é", "x" * 64, "y" * 300)


def _guc(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value, "vartype": "string"}


def base_spec(addresses: Addresses, form: str, *, catalog: bool) -> dict[str, JSON]:
    """A valid primary spec pointing at `addresses` in one of the four storage forms."""
    settings = [_guc(name, value) for name, value in addresses.settings]
    roles: list[JSON] = []
    databases: list[JSON] = []
    if catalog:
        roles = [{"name": "alice"}]
        databases = [{"name": "app", "owner": "alice"}]
    spec: dict[str, JSON] = {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {"roles": roles, "databases": databases, "settings": settings},
        "skip_pg_catalog_updates": not catalog,
    }
    if form in ("libpq", "grpc"):
        spec["pageserver_connection_info"] = {
            "shard_count": 0,
            "shards": {
                "0000": {
                    "pageservers": [
                        {"id": 1, "libpq_url": addresses.libpq_url, "grpc_url": addresses.grpc_url}
                    ]
                }
            },
            "prefer_protocol": form,
        }
    elif form == "legacy":
        spec["pageserver_connstring"] = addresses.libpq_url
    if form == "guc":
        settings += [
            _guc("neon.pageserver_connstring", addresses.libpq_url),
            _guc("neon.safekeepers", ",".join(addresses.safekeepers)),
            _guc("neon.tenant_id", addresses.tenant_id),
            _guc("neon.timeline_id", addresses.timeline_id),
        ]
    else:
        spec["tenant_id"] = addresses.tenant_id
        spec["timeline_id"] = addresses.timeline_id
        spec["safekeeper_connstrings"] = list(addresses.safekeepers)
    return spec


# --- values from the schema -------------------------------------------------------------------


def deref(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DEFS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a subschema (`anyOf`/`oneOf`), each dereferenced."""
    schema = deref(schema)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives is None:
        return [schema]
    return [b for alt in alternatives for b in branches(alt)]


def _strings(addresses: Addresses) -> st.SearchStrategy[str]:
    known = (
        addresses.libpq_url,
        addresses.grpc_url,
        *addresses.safekeepers,
        addresses.tenant_id,
        *NAMES,
        *LSNS,
    )
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(RESERVED + ODD),
        st.text(max_size=12),
    )


def json_values(depth: int = 0) -> st.SearchStrategy[JSON]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    )
    if depth >= 2:
        return scalars
    inner = json_values(depth + 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=2),
        st.dictionaries(st.text(max_size=4).map(lambda k: "x_" + k), inner, max_size=2),
    )


def values(schema: dict[str, Any], addresses: Addresses, depth: int = 0) -> st.SearchStrategy[JSON]:
    """Instances of `schema` (a subschema of the exported one), small and shallow."""
    options = [_values_of_branch(b, addresses, depth) for b in branches(schema)]
    return st.one_of(*options)


def _values_of_branch(
    schema: dict[str, Any], addresses: Addresses, depth: int
) -> st.SearchStrategy[JSON]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return _strings(addresses)
    if kind == "integer":
        low = schema.get("minimum", -(2**63))
        high = schema.get("maximum", 2**64 - 1)
        return st.one_of(st.integers(low, high), st.sampled_from((low, high, 0, 1)))
    if kind == "number":
        return st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        if depth >= 3:
            return st.just([])
        return st.lists(values(schema.get("items", {}), addresses, depth + 1), max_size=2)
    if kind == "object":
        return _objects(schema, addresses, depth)
    return json_values()


def _objects(schema: dict[str, Any], addresses: Addresses, depth: int) -> st.SearchStrategy[JSON]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    if depth >= 3:
        optional: dict[str, st.SearchStrategy[JSON]] = {}
    else:
        optional = {
            name: values(sub, addresses, depth + 1)
            for name, sub in properties.items()
            if name not in required
        }
    fixed = st.fixed_dictionaries(
        {name: values(properties[name], addresses, depth + 1) for name in sorted(required)},
        optional=optional,
    )
    extra: st.SearchStrategy[dict[str, JSON]] | None = None
    if "patternProperties" in schema:
        ((pattern, sub),) = schema["patternProperties"].items()
        extra = st.dictionaries(
            st.from_regex(pattern, fullmatch=True), values(sub, addresses, depth + 1), max_size=2
        )
    elif isinstance(schema.get("additionalProperties"), dict):
        extra = st.dictionaries(
            _strings(addresses),
            values(schema["additionalProperties"], addresses, depth + 1),
            max_size=2,
        )
    if extra is None:
        return fixed
    return st.tuples(fixed, extra).map(lambda pair: {**pair[1], **pair[0]})


_TYPE_SAMPLES: dict[str, JSON] = {
    "string": "s",
    "integer": 7,
    "number": 1.5,
    "boolean": True,
    "null": None,
    "array": [],
    "object": {},
}


def outside(schema: dict[str, Any]) -> list[JSON]:
    """Values the subschema refuses: other JSON types, just past integer bounds, strings off
    an enum or a pattern."""
    allowed: set[str] = set()
    wrong: list[JSON] = []
    for branch in branches(schema):
        if "enum" in branch:
            allowed.add("string" if isinstance(branch["enum"][0], str) else "?")
            wrong.append("not-" + str(branch["enum"][0]))
            continue
        kind = branch.get("type")
        if kind is None:
            return []  # anything goes
        allowed.add(kind)
        if kind == "integer":
            if "minimum" in branch:
                wrong.append(branch["minimum"] - 1)
            if "maximum" in branch:
                wrong.append(branch["maximum"] + 1)
            wrong.append(2.5)
        if kind == "string" and "pattern" in branch:
            wrong.append("zz")
        if kind == "object" and branch.get("required"):
            wrong.append({})
    if "number" in allowed:
        allowed.add("integer")
    wrong += [sample for kind, sample in _TYPE_SAMPLES.items() if kind not in allowed]
    return wrong


# --- places in a document ---------------------------------------------------------------------


@dataclass
class Place:
    """A slot of the document: `container[key]`, described by `schema` (None: the schema says
    nothing about it); `present` says whether the slot is filled."""

    container: dict[str, JSON] | list[JSON]
    key: str | int
    schema: dict[str, Any]
    present: bool
    required: bool

    def get(self) -> JSON:
        if isinstance(self.container, list):
            assert isinstance(self.key, int)
            return self.container[self.key]
        assert isinstance(self.key, str)
        return self.container[self.key]


def _branch_for(schema: dict[str, Any], value: JSON) -> dict[str, Any] | None:
    """The alternative of `schema` that describes `value`'s JSON type, if any."""
    for branch in branches(schema):
        kind = branch.get("type")
        if (
            (kind == "object" and isinstance(value, dict))
            or (kind == "array" and isinstance(value, list))
            or (kind == "string" and isinstance(value, str))
        ):
            return branch
    return None


def places(document: JSON) -> list[Place]:
    """Every slot of `document` the schema describes, filled or not, in a fixed order."""
    found: list[Place] = []

    def walk(node: JSON, schema: dict[str, Any]) -> None:
        branch = _branch_for(schema, node)
        if branch is None:
            return
        if isinstance(node, dict) and branch.get("type") == "object":
            properties: dict[str, Any] = branch.get("properties", {})
            required = set(branch.get("required", ()))
            for name, sub in properties.items():
                found.append(Place(node, name, sub, name in node, name in required))
                if name in node:
                    walk(node[name], sub)
            pattern = branch.get("patternProperties") or {}
            additional = branch.get("additionalProperties")
            sub = next(iter(pattern.values()), additional if isinstance(additional, dict) else None)
            if sub is not None:
                for name in sorted(k for k in node if k not in properties):
                    found.append(Place(node, name, sub, True, False))
                    walk(node[name], sub)
        elif isinstance(node, list) and branch.get("type") == "array":
            item = branch.get("items", {})
            for index, value in enumerate(node):
                found.append(Place(node, index, item, True, False))
                walk(value, item)
            found.append(Place(node, len(node), item, False, False))

    found.append(Place({"": document}, "", SCHEMA, True, True))  # the document itself
    walk(document, SCHEMA)
    return found


def _set(place: Place, value: JSON) -> None:
    container, key = place.container, place.key
    if isinstance(container, list):
        assert isinstance(key, int)
        if key == len(container):
            container.append(value)
        else:
            container[key] = value
    else:
        assert isinstance(key, str)
        container[key] = value


def _delete(place: Place) -> None:
    container, key = place.container, place.key
    if isinstance(container, list):
        assert isinstance(key, int)
        del container[key]
    else:
        assert isinstance(key, str)
        del container[key]


# --- mutations --------------------------------------------------------------------------------

Mutation = Callable[[Draw, dict[str, JSON], Addresses], dict[str, JSON]]


def schema_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """At a slot the schema knows: a value from its subschema, one outside it, or deletion."""
    candidates = places(spec)[1:]  # the document as a whole is the text mutations' business
    place = draw(st.sampled_from(candidates))
    action = draw(st.sampled_from(("value", "value", "outside", "delete")))
    if action == "delete" and place.present:
        _delete(place)
    elif action == "outside" and (wrong := outside(place.schema)):
        _set(place, draw(st.sampled_from(wrong)))
    else:
        _set(place, draw(values(place.schema, addresses)))
    return spec


def _pageservers(spec: dict[str, JSON]) -> list[dict[str, JSON]]:
    info = spec.get("pageserver_connection_info")
    if not isinstance(info, dict) or not isinstance(info.get("shards"), dict):
        return []
    found = []
    for shard in info["shards"].values():
        if isinstance(shard, dict) and isinstance(shard.get("pageservers"), list):
            found += [p for p in shard["pageservers"] if isinstance(p, dict)]
    return found


def _conninfo(spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """The spec's `pageserver_connection_info`, made first if it has none."""
    info = spec.get("pageserver_connection_info")
    if not isinstance(info, dict):
        spec.pop("pageserver_connstring", None)
        info = base_spec(addresses, "libpq", catalog=False)["pageserver_connection_info"]
        spec["pageserver_connection_info"] = info
    return info


def url_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """A pageserver without the URL of the preferred protocol (or of the other one), or with
    a URL set to null; optionally the protocol switched."""
    info = _conninfo(spec, addresses)
    if draw(st.booleans()):
        info["prefer_protocol"] = draw(st.sampled_from(("grpc", "libpq")))
    servers = _pageservers(spec)
    if servers:
        server = draw(st.sampled_from(servers))
        key = draw(st.sampled_from(("grpc_url", "libpq_url")))
        if draw(st.booleans()):
            server.pop(key, None)
        else:
            server[key] = None
    return spec


def shard_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """A shard map of `count` shards with some shards missing, misnumbered or empty."""
    info = _conninfo(spec, addresses)
    count = draw(st.sampled_from((0, 1, 2, 4)))
    numbers = range(max(count, 1))
    keys = [f"{n:02x}{count:02x}" for n in numbers]
    if draw(st.booleans()):  # a key of another shard count, or a dropped one
        keys = draw(st.lists(st.sampled_from([*keys, "0000", "0001", "0102", "zz"]), max_size=3))
    info["shard_count"] = count
    pageserver = {"libpq_url": addresses.libpq_url, "grpc_url": addresses.grpc_url}
    shards: dict[str, JSON] = {}
    for key in keys:
        empty = draw(st.booleans()) and draw(st.booleans())
        shards[key] = {"pageservers": [] if empty else [dict(pageserver)]}
    info["shards"] = shards
    if draw(st.booleans()):
        info["stripe_size"] = draw(st.sampled_from((None, 0, 8, 2**15, 2**32)))
    return spec


def _string_places(spec: dict[str, JSON]) -> list[Place]:
    return [place for place in places(spec)[1:] if place.present and isinstance(place.get(), str)]


def surrogate_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """A lone surrogate in one string of the spec, or in a key of an unknown field."""
    del addresses
    surrogate = draw(st.sampled_from(SURROGATES))
    strings = _string_places(spec)
    if strings and draw(st.booleans()):
        place = draw(st.sampled_from(strings))
        old = place.get()
        _set(place, draw(st.sampled_from((surrogate, old + surrogate, surrogate + old))))
    else:
        spec["x_" + surrogate] = 1
    return spec


def name_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """Reserved, odd or duplicated role and database names, owners and rename targets, with
    the catalog step on or off."""
    del addresses
    name = draw(st.sampled_from((*RESERVED, *ODD, *NAMES, "pg_db", "PG_x")))
    cluster = spec.get("cluster")
    if not isinstance(cluster, dict):
        return spec
    roles = cluster.setdefault("roles", [])
    databases = cluster.setdefault("databases", [])
    if not isinstance(roles, list) or not isinstance(databases, list):
        return spec
    where = draw(st.sampled_from(("role", "database", "owner", "rename", "delete", "option")))
    if where == "role":
        roles.append({"name": name})
    elif where == "database":
        databases.append({"name": name, "owner": "alice"})
    elif where == "owner":
        databases.append({"name": "db2", "owner": name})
    elif where == "option":
        roles.append({"name": "r2", "options": [{"name": name, "value": name, "vartype": "bool"}]})
    else:
        action = draw(st.sampled_from(("rename_role", "rename_db", "delete_role", "delete_db")))
        op: dict[str, JSON] = {"action": action, "name": "alice"}
        if where == "rename" and draw(st.booleans()):
            op["new_name"] = name
        spec["delta_operations"] = [op]
    if draw(st.booleans()):
        spec["skip_pg_catalog_updates"] = not spec.get("skip_pg_catalog_updates", False)
    return spec


def mode_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """Replica and Static modes, LSNs with whitespace or in bad forms."""
    del addresses
    spec["mode"] = draw(
        st.one_of(
            st.sampled_from(("Primary", "Replica", "Static", "primary")),
            st.sampled_from(LSNS).map(lambda lsn: {"Static": lsn}),
            st.just({"Static": "0/1", "Replica": None}),
        )
    )
    return spec


def safekeeper_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """Safekeepers duplicated, empty, or only in the `neon.safekeepers` setting."""
    listed = list(addresses.safekeepers)
    choice = draw(st.sampled_from(("duplicate", "empty", "setting", "absent")))
    if choice == "duplicate":
        spec["safekeeper_connstrings"] = [*listed, listed[0]]
    elif choice == "empty":
        spec["safekeeper_connstrings"] = []
    else:
        spec.pop("safekeeper_connstrings", None)
    if choice == "setting":
        cluster = spec.get("cluster")
        if isinstance(cluster, dict) and isinstance(cluster.get("settings"), list):
            value = draw(st.sampled_from((",".join(listed), "", f"{listed[0]},{listed[0]}")))
            cluster["settings"].append(_guc("neon.safekeepers", value))
    return spec


def setting_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """The `cluster.settings` fallbacks resolution reads, with good and bad values."""
    cluster = spec.get("cluster")
    if not isinstance(cluster, dict):
        return spec
    if not isinstance(cluster.get("settings"), list):
        cluster["settings"] = []
    name = draw(
        st.sampled_from(
            (
                "neon.pageserver_connstring",
                "neon.stripe_size",
                "neon.tenant_id",
                "neon.timeline_id",
                "neon.safekeepers",
                "neon.endpoint_storage_addr",
            )
        )
    )
    value = draw(
        st.one_of(
            st.sampled_from(
                (
                    addresses.libpq_url,
                    f"{addresses.libpq_url},{addresses.libpq_url}",
                    addresses.tenant_id,
                    "+8",
                    "8",
                    "",
                    "4294967296",
                    "xyz",
                )
            ),
            st.none(),
        )
    )
    cluster["settings"].append({"name": name, "value": value, "vartype": "string"})
    if draw(st.booleans()):  # the spec's own fields gone, so that the setting is what is read
        for field in _SETTING_STANDS_FOR.get(name, ()):
            spec.pop(field, None)
    return spec


_SETTING_STANDS_FOR = {
    "neon.pageserver_connstring": ("pageserver_connection_info", "pageserver_connstring"),
    "neon.tenant_id": ("tenant_id",),
    "neon.timeline_id": ("timeline_id",),
    "neon.safekeepers": ("safekeeper_connstrings",),
    "neon.endpoint_storage_addr": ("endpoint_storage_addr",),
}


def nesting_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """Arrays nested deep in an unknown field or in place of a known one; never at the one
    level where the file and the request body are meant to differ (see the module text)."""
    del addresses
    # The document is level 1: a field's value nested `depth` deep reaches level depth + 1.
    depth = draw(st.one_of(st.integers(1, MAX_DEPTH - 3), st.integers(MAX_DEPTH, MAX_DEPTH + 400)))
    value: JSON = []
    for _ in range(depth - 1):
        value = [value]
    target = draw(st.sampled_from(("x_deep", "cluster", "safekeeper_connstrings", "mode")))
    spec[target] = value
    return spec


def extra_mutation(draw: Draw, spec: dict[str, JSON], addresses: Addresses) -> dict[str, JSON]:
    """Unknown fields, which every channel ignores."""
    del addresses
    spec.update(
        draw(
            st.dictionaries(st.text(max_size=6).map(lambda k: "x_" + k), json_values(), max_size=2)
        )
    )
    return spec


MUTATIONS: tuple[Mutation, ...] = (
    schema_mutation,
    schema_mutation,
    schema_mutation,
    url_mutation,
    shard_mutation,
    surrogate_mutation,
    name_mutation,
    name_mutation,
    mode_mutation,
    safekeeper_mutation,
    setting_mutation,
    nesting_mutation,
    extra_mutation,
)


def _text(spec: JSON, draw: Draw) -> str:
    """The document's text, sometimes broken: a duplicate key, NaN, cut off, or not an object."""
    # ensure_ascii: a lone surrogate is written as its \\u escape, as a client would send it.
    text = json.dumps(spec, ensure_ascii=True)
    change = draw(st.sampled_from(("none",) * 24 + ("duplicate", "nan", "cut", "array")))
    if change == "duplicate" and text.startswith("{"):
        return '{"format_version": 1.0, ' + text[1:]
    if change == "nan":
        return text.replace('"suspend_timeout_seconds": -1', '"suspend_timeout_seconds": NaN')
    if change == "cut":
        return text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    if change == "array":
        return json.dumps([spec], ensure_ascii=True)
    return text


@st.composite
def spec_texts(draw: Draw, addresses: Addresses = OFFLINE) -> str:
    """A spec document (JSON text): a valid base and zero to three mutations."""
    form = draw(st.sampled_from(FORMS))
    spec = base_spec(addresses, form, catalog=draw(st.booleans()))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        spec = mutation(draw, spec, addresses)
        if not isinstance(spec, dict):
            break
    return _text(spec, draw)
