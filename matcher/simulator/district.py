"""A seeded model of Qijiang District's charity union: its four-level hierarchy and partners."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from schemas import Level, Location, Node, Partner, PartnerKind

CENTRE_ID = "centre"
CENTRE_NAME = "Qijiang District Charity Centre"
CENTRE_LOCATION = Location(lat=29.03, lon=106.65)

# The union site of the source article sits in Wenlong street, Shuanglong community; both are
# always present so demos can point at the real place.
HOME_WORKSTATION = "wenlong"
HOME_STUDIO = "shuanglong"

# Urban streets (街道) come first: their studios are communities, a town's studios are villages.
STREETS: tuple[str, ...] = ("wenlong", "gunan", "tonghui", "sanjiang", "xinsheng")
TOWNS: tuple[str, ...] = (
    "dongxi", "ganshui", "datong", "shihao", "yongxin", "sanjiao", "longsheng", "guofu",
    "zhuantang", "dingshan", "anwen", "fuhuan", "yongcheng", "hengshan", "shijiao", "zhongfeng",
)
WORKSTATION_NAMES: tuple[str, ...] = STREETS + TOWNS

COMMUNITY_NAMES: tuple[str, ...] = (
    "shuanglong", "xinhua", "jiuzhou", "yingshan", "qiaohe", "dongfeng", "baiyun", "jinlong",
    "fuxing", "hongqi", "heping", "minsheng", "xingfu", "jinqiao", "longtan", "qinglong",
    "baishi", "huaxi", "shuangxi", "hexing", "tiantai", "yangliu", "shitang", "yanjing",
    "gaoqing", "xinglong", "changan", "fenghuang", "meilin", "songbai", "taoyuan", "lianhua",
    "shuangfeng", "jinsha", "qingshan", "baiyang", "huilong", "tianxing", "guanyin", "dashu",
    "chengxi", "chengdong", "nanmen", "beijie", "xinjian", "lvyuan", "jinxiu", "xiangshan",
    "wufu", "tangba", "huangjue", "shuangqiao", "lijia", "maoping", "yuquan", "pingan",
    "sanhe", "sihai", "wanshou", "qingquan", "shiban", "zhuyuan", "hongyan", "xinmin",
)

# Shares of the union's membership by kind: 20+ departments among 200+ members.
PARTNER_KIND_SHARES: dict[PartnerKind, float] = {
    PartnerKind.ENTERPRISE: 0.22,
    PartnerKind.CHARITY: 0.15,
    PartnerKind.SOCIAL_WORK_AGENCY: 0.12,
    PartnerKind.VOLUNTEER_GROUP: 0.20,
    PartnerKind.MERCHANT: 0.21,
    PartnerKind.GOVERNMENT_DEPARTMENT: 0.10,
}

# Where each kind of partner is attached (centre / workstation / studio weights).
PARTNER_HOME_LEVELS: dict[PartnerKind, tuple[float, float, float]] = {
    PartnerKind.ENTERPRISE: (0.10, 0.60, 0.30),
    PartnerKind.CHARITY: (0.15, 0.55, 0.30),
    PartnerKind.SOCIAL_WORK_AGENCY: (0.05, 0.65, 0.30),
    PartnerKind.VOLUNTEER_GROUP: (0.05, 0.35, 0.60),
    PartnerKind.MERCHANT: (0.00, 0.30, 0.70),
    PartnerKind.GOVERNMENT_DEPARTMENT: (1.00, 0.00, 0.00),
}

GOVERNMENT_DEPARTMENTS: tuple[str, ...] = (
    "Civil Affairs Bureau", "Communist Youth League Committee", "Women's Federation",
    "Disabled Persons' Federation", "Health Commission", "Education Commission",
    "Human Resources and Social Security Bureau", "Veterans Affairs Bureau",
    "Agriculture and Rural Affairs Commission", "Federation of Trade Unions",
    "Red Cross Society", "Rural Revitalisation Bureau", "Medical Security Bureau",
    "Justice Bureau", "Culture and Tourism Commission", "Commerce Commission",
    "Market Supervision Bureau", "Emergency Management Bureau",
    "Housing and Construction Commission",
    "Ageing Work Committee", "Committee for the Wellbeing of the Next Generation",
    "Science and Technology Association", "Ethnic and Religious Affairs Commission",
    "Finance Bureau",
)
ENTERPRISE_STEMS: tuple[str, ...] = (
    "Smart Elderly Care Technology", "Health Management", "Gear Transmission", "Aluminium Industry",
    "Agricultural Development", "Property Management", "Logistics", "Medical Devices",
    "Food Processing", "Construction Engineering", "New Energy", "Home Care Services",
    "Textile", "Tea Industry", "Pharmaceutical", "Rehabilitation Equipment",
)
CHARITY_STEMS: tuple[str, ...] = (
    "Charity Federation", "Love Heart Charity Association", "Sunshine Charity Foundation",
    "Care for the Elderly Foundation", "Children's Welfare Association",
    "Warm Home Mutual Aid Society", "Education Aid Foundation", "Kindness Food Bank",
    "Silver Age Charity Association", "Helping Hands Foundation",
)
AGENCY_STEMS: tuple[str, ...] = (
    "Xinyuan", "Tongxin", "Heyue", "Huiai", "Anhe", "Mingde", "Shanyuan", "Jiayuan", "Qiaoxin",
    "Lianxin",
)
VOLUNTEER_STEMS: tuple[str, ...] = (
    "Red Vest", "Sunshine", "Youth", "Silver-Haired", "Party Member", "Women's", "Medical",
    "University Student", "Neighbourhood", "Lei Feng", "Retired Teachers'", "Good Neighbour",
)
MERCHANT_STEMS: tuple[str, ...] = (
    "Fresh Market", "Supermarket", "Bakery", "Grain and Oil Shop", "Pharmacy", "Barber Shop",
    "Noodle House", "Hotpot Restaurant", "Dairy Store", "Fruit Shop", "Clothing Store",
    "Hardware Store", "Bedding Store", "Convenience Store",
)

KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQUATOR = 111.320

# Spacing of the map, in km: (smallest gap to a sibling, distance range from the parent).
WORKSTATION_GAP_KM = 5.0
WORKSTATION_RADIUS_KM = (4.0, 10.0)
STUDIO_GAP_KM = 2.2
STUDIO_RADIUS_KM = (1.5, 4.0)
GRID_GAP_KM = 0.5
GRID_MAX_SPREAD_KM = 2.0
GRID_RADIUS_KM = (0.35, 0.85)
PLACEMENT_TRIES = 400


@dataclass(frozen=True)
class District:
    """The hierarchy and the partners of one simulated district, with lookups."""

    seed: int
    nodes: list[Node]
    partners: list[Partner]

    @cached_property
    def node_by_id(self) -> dict[str, Node]:
        return {node.node_id: node for node in self.nodes}

    @cached_property
    def parent_of(self) -> dict[str, str | None]:
        return {node.node_id: node.parent_id for node in self.nodes}

    @cached_property
    def children_of(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {node.node_id: [] for node in self.nodes}
        for node in self.nodes:
            if node.parent_id is not None:
                children[node.parent_id].append(node.node_id)
        return children

    @cached_property
    def partner_by_id(self) -> dict[str, Partner]:
        return {partner.partner_id: partner for partner in self.partners}

    @cached_property
    def centre_id(self) -> str:
        return next(node.node_id for node in self.nodes if node.level is Level.CENTRE)

    @cached_property
    def workstation_ids(self) -> list[str]:
        return self.ids_at(Level.WORKSTATION)

    @cached_property
    def studio_ids(self) -> list[str]:
        return self.ids_at(Level.STUDIO)

    @cached_property
    def grid_ids(self) -> list[str]:
        return self.ids_at(Level.GRID)

    def ids_at(self, level: Level) -> list[str]:
        """Ids of every node at one level, in hierarchy order."""
        return [node.node_id for node in self.nodes if node.level is level]

    def location(self, node_id: str) -> Location:
        """The representative point of a node (every simulated node has one)."""
        location = self.node_by_id[node_id].location
        assert location is not None, f"simulated node {node_id} has no location"
        return location

    def ancestors(self, node_id: str) -> list[str]:
        """The node's parent, grandparent... up to the centre."""
        chain: list[str] = []
        parent = self.parent_of[node_id]
        while parent is not None:
            chain.append(parent)
            parent = self.parent_of[parent]
        return chain

    def descendants(self, node_id: str, level: Level) -> list[str]:
        """Nodes at `level` in the subtree of `node_id` (itself included if at that level)."""
        found: list[str] = []
        stack = [node_id]
        while stack:
            current = stack.pop()
            if self.node_by_id[current].level is level:
                found.append(current)
            stack.extend(reversed(self.children_of[current]))
        return found


def distance_km(a: Location, b: Location) -> float:
    """Great-circle distance between two points (haversine)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlon = math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def offset(origin: Location, km: float, bearing_deg: float) -> Location:
    """The point `km` away from `origin` towards `bearing_deg` (flat-earth, fine at km scale)."""
    bearing = math.radians(bearing_deg)
    dlat = km * math.cos(bearing) / KM_PER_DEG_LAT
    dlon = km * math.sin(bearing) / (KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(origin.lat)))
    return Location(lat=round(origin.lat + dlat, 6), lon=round(origin.lon + dlon, 6))


def jitter(rng: random.Random, origin: Location, max_km: float) -> Location:
    """A point uniformly spread within `max_km` of `origin`."""
    return offset(origin, max_km * math.sqrt(rng.random()), rng.uniform(0, 360))


def build_district(
    seed: int = 7,
    workstations: int = 8,
    studios_per_ws: int = 4,
    grids_per_studio: int = 5,
    partners: int = 220,
) -> District:
    """Build the seeded hierarchy (centre > workstations > studios > grids) and its partners."""
    if not 1 <= workstations <= len(WORKSTATION_NAMES):
        raise ValueError(f"workstations must be 1..{len(WORKSTATION_NAMES)}")
    if min(studios_per_ws, grids_per_studio, partners) < 1:
        raise ValueError("studios_per_ws, grids_per_studio and partners must be positive")
    rng = random.Random(f"district:{seed}")
    nodes = _build_nodes(rng, workstations, studios_per_ws, grids_per_studio)
    district = District(seed=seed, nodes=nodes, partners=[])
    return District(seed=seed, nodes=nodes, partners=_build_partners(rng, district, partners))


def _build_nodes(
    rng: random.Random, workstations: int, studios_per_ws: int, grids_per_studio: int
) -> list[Node]:
    """Every node, parents before children."""
    centre = Node(node_id=CENTRE_ID, level=Level.CENTRE, name=CENTRE_NAME,
                  location=CENTRE_LOCATION)
    ws_names = _pick_workstations(rng, workstations)
    ws_points = _place_workstations(rng, len(ws_names))
    community_pool = _community_pool(rng, workstations * studios_per_ws)
    nodes = [centre]
    for index, (ws, ws_point) in enumerate(zip(ws_names, ws_points, strict=True)):
        ws_id = f"ws-{ws}"
        nodes.append(Node(node_id=ws_id, level=Level.WORKSTATION, parent_id=CENTRE_ID,
                          name=_workstation_name(ws), location=ws_point))
        names = community_pool[index * studios_per_ws:(index + 1) * studios_per_ws]
        nodes.extend(_build_studios(rng, ws, ws_point, names, grids_per_studio))
    return nodes


def _pick_workstations(rng: random.Random, count: int) -> list[str]:
    """Wenlong first (the union site), then a seeded choice among the other streets and towns."""
    others = [name for name in WORKSTATION_NAMES if name != HOME_WORKSTATION]
    return [HOME_WORKSTATION, *rng.sample(others, count - 1)]


def _community_pool(rng: random.Random, count: int) -> list[str]:
    """Studio names, Shuanglong first; names repeat (with a suffix) only past the pool's size."""
    others = [name for name in COMMUNITY_NAMES if name != HOME_STUDIO]
    rng.shuffle(others)
    pool = [HOME_STUDIO, *others]
    return [pool[i % len(pool)] + ("" if i < len(pool) else str(i // len(pool) + 1))
            for i in range(count)]


def _workstation_name(ws: str) -> str:
    """Human name of a workstation: street (街道) or town (镇)."""
    unit = "Street" if ws in STREETS else "Town"
    return f"{ws.title()} {unit} Charity Workstation"


def _place_workstations(rng: random.Random, count: int) -> list[Location]:
    """Wenlong at the district centre; the others 5+ km apart, within ~10 km of it."""
    first = offset(CENTRE_LOCATION, rng.uniform(0.3, 1.2), rng.uniform(0, 360))
    # Many workstations do not fit in a 10 km disc 5 km apart; grow the disc with the count.
    outer = max(WORKSTATION_RADIUS_KM[1], WORKSTATION_RADIUS_KM[1] * math.sqrt(count / 8))
    return _scatter(rng, CENTRE_LOCATION, count, (WORKSTATION_RADIUS_KM[0], outer),
                    WORKSTATION_GAP_KM, math.inf, placed=[first])


def _build_studios(
    rng: random.Random, ws: str, ws_point: Location, names: Sequence[str], grids: int
) -> list[Node]:
    """The studios of one workstation, each followed by its grids."""
    unit = "Community" if ws in STREETS else "Village"
    points = _scatter(rng, ws_point, len(names), STUDIO_RADIUS_KM, STUDIO_GAP_KM, math.inf)
    nodes: list[Node] = []
    for name, point in zip(names, points, strict=True):
        studio_id = f"ws-{ws}-st-{name}"
        nodes.append(Node(node_id=studio_id, level=Level.STUDIO, parent_id=f"ws-{ws}",
                          name=f"{name.title()} {unit} Charity Studio", location=point))
        grid_points = _scatter(rng, point, grids, GRID_RADIUS_KM, GRID_GAP_KM, GRID_MAX_SPREAD_KM)
        nodes.extend(
            Node(node_id=f"{studio_id}-g{number}", level=Level.GRID, parent_id=studio_id,
                 name=f"Grid {number}, {name.title()} Studio", location=grid_point)
            for number, grid_point in enumerate(grid_points, start=1)
        )
    return nodes


def _scatter(
    rng: random.Random,
    origin: Location,
    count: int,
    radius_km: tuple[float, float],
    min_gap_km: float,
    max_gap_km: float,
    placed: list[Location] | None = None,
) -> list[Location]:
    """`count` points around `origin`, pairwise between `min_gap_km` and `max_gap_km` apart.

    Points go round the origin in evenly spaced sectors with jitter, so they spread like real
    neighbourhoods; when a point cannot be placed the gap is relaxed rather than failing.
    """
    points = list(placed or [])
    start = rng.uniform(0, 360)
    gap = min_gap_km
    while len(points) < count:
        sector = 360.0 * len(points) / count
        candidate = _try_place(rng, origin, points, start + sector, 360.0 / count,
                               radius_km, (gap, max_gap_km))
        if candidate is None:
            gap *= 0.9
            continue
        points.append(candidate)
    return points


def _try_place(
    rng: random.Random,
    origin: Location,
    points: list[Location],
    bearing: float,
    sector_width: float,
    radius_km: tuple[float, float],
    gaps_km: tuple[float, float],
) -> Location | None:
    """A point in the given sector within `gaps_km` of every placed point, if one is found."""
    for attempt in range(PLACEMENT_TRIES):
        # After a while any bearing is allowed: a crowded sector must not block placement.
        width = sector_width if attempt < PLACEMENT_TRIES // 2 else 360.0
        candidate = offset(origin, rng.uniform(*radius_km),
                           bearing + rng.uniform(-width / 2, width / 2))
        if all(gaps_km[0] <= distance_km(candidate, point) <= gaps_km[1] for point in points):
            return candidate
    return None


def _build_partners(rng: random.Random, district: District, count: int) -> list[Partner]:
    """`count` partners of every kind, with plausible names and home nodes."""
    kinds = [kind for kind, n in _apportion(PARTNER_KIND_SHARES, count).items() for _ in range(n)]
    rng.shuffle(kinds)  # so partner ids say nothing about the kind
    used: set[str] = set()
    partners: list[Partner] = []
    gov_index = 0
    for number, kind in enumerate(kinds, start=1):
        home = _partner_home(rng, district, kind)
        if kind is PartnerKind.GOVERNMENT_DEPARTMENT:
            name = _department_name(gov_index)
            gov_index += 1
        else:
            name = _partner_name(rng, district, kind, home)
        partners.append(Partner(partner_id=f"partner-{number:03d}", name=_unique(name, used),
                                kind=kind, home_node_id=home))
    return partners


def _apportion(shares: dict[PartnerKind, float], total: int) -> dict[PartnerKind, int]:
    """Split `total` by `shares` (largest remainder), giving every kind one if total allows."""
    raw = {kind: share * total for kind, share in shares.items()}
    counts = {kind: int(value) for kind, value in raw.items()}
    if total >= len(shares):
        counts = {kind: max(1, n) for kind, n in counts.items()}
    by_remainder = sorted(raw, key=lambda kind: raw[kind] - int(raw[kind]), reverse=True)
    index = 0
    while sum(counts.values()) < total:
        counts[by_remainder[index % len(by_remainder)]] += 1
        index += 1
    while sum(counts.values()) > total:
        largest = max(counts, key=lambda kind: counts[kind])
        counts[largest] -= 1
    return counts


def _partner_home(rng: random.Random, district: District, kind: PartnerKind) -> str:
    """A home node at the level typical of the partner's kind."""
    weights = PARTNER_HOME_LEVELS[kind]
    level = rng.choices([Level.CENTRE, Level.WORKSTATION, Level.STUDIO], weights=weights)[0]
    if level is Level.CENTRE:
        return district.centre_id
    return rng.choice(district.ids_at(level))


def _place_name(district: District, home: str) -> str:
    """The place word used in a partner's name: its studio or workstation, else Qijiang."""
    node = district.node_by_id[home]
    if node.level is Level.CENTRE:
        return "Qijiang"
    tail = home.rsplit("-", 1)[-1]
    return tail.rstrip("0123456789").title()


def _partner_name(rng: random.Random, district: District, kind: PartnerKind, home: str) -> str:
    """A plausible name for a non-government partner."""
    place = _place_name(district, home)
    if kind is PartnerKind.ENTERPRISE:
        return f"Chongqing {place} {rng.choice(ENTERPRISE_STEMS)} Co., Ltd."
    if kind is PartnerKind.CHARITY:
        return f"{place} {rng.choice(CHARITY_STEMS)}"
    if kind is PartnerKind.SOCIAL_WORK_AGENCY:
        return f"Qijiang {rng.choice(AGENCY_STEMS)} Social Work Service Centre ({place})"
    if kind is PartnerKind.VOLUNTEER_GROUP:
        return f"{place} {rng.choice(VOLUNTEER_STEMS)} Volunteer Team"
    return f"{place} {rng.choice(MERCHANT_STEMS)}"


def _department_name(index: int) -> str:
    """A district department; numbered offices past the list (only with huge partner counts)."""
    base = GOVERNMENT_DEPARTMENTS[index % len(GOVERNMENT_DEPARTMENTS)]
    round_ = index // len(GOVERNMENT_DEPARTMENTS)
    suffix = f" (Office {round_ + 1})" if round_ else ""
    return f"Qijiang District {base}{suffix}"


def _unique(name: str, used: set[str]) -> str:
    """The name, or a numbered branch of it if another partner already has it."""
    candidate, branch = name, 2
    while candidate in used:
        candidate = f"{name} (Branch {branch})"
        branch += 1
    used.add(candidate)
    return candidate
