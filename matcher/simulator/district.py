"""A seeded model of Qijiang District's charity union: its four-level hierarchy and partners."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from schemas import Level, Location, Node, Partner, PartnerKind
from schemas.common import Reach

CENTRE_ID = "centre"
CENTRE_NAME = "綦江区慈善中心"
CENTRE_LOCATION = Location(lat=29.03, lon=106.65)

# The union site of the source article sits in Wenlong street, Shuanglong community; both are
# always present so demos can point at the real place.
HOME_WORKSTATION = "wenlong"
HOME_STUDIO = "shuanglong"

# Ids are pinyin; names are the hanzi the district registers. Urban streets (街道) come first:
# their studios are communities (社区), a town's (镇) studios are villages (村).
STREET_HANZI: dict[str, str] = {
    "wenlong": "文龙", "gunan": "古南", "tonghui": "通惠", "sanjiang": "三江", "xinsheng": "新盛",
}
# Qijiang's sixteen towns (those of Wansheng, run by its own development zone, are left out).
TOWN_HANZI: dict[str, str] = {
    "dongxi": "东溪", "ganshui": "赶水", "datong": "打通", "shihao": "石壕", "yongxin": "永新",
    "sanjiao": "三角", "longsheng": "隆盛", "guofu": "郭扶", "zhuantang": "篆塘",
    "dingshan": "丁山", "anwen": "安稳", "fuhuan": "扶欢", "yongcheng": "永城",
    "hengshan": "横山", "shijiao": "石角", "zhongfeng": "中峰",
}
STREETS: tuple[str, ...] = tuple(STREET_HANZI)
TOWNS: tuple[str, ...] = tuple(TOWN_HANZI)
WORKSTATION_NAMES: tuple[str, ...] = STREETS + TOWNS
WORKSTATION_HANZI: dict[str, str] = STREET_HANZI | TOWN_HANZI

# Common community and village names of the area; a studio can sit under any workstation, so
# these are not tied to a particular street or town. The characters of a few are plausible
# choices rather than checked ones: 营山, 和兴, 高青, 石塘, 桃园, 双凤, 绿园, 茅坪, 三合.
COMMUNITY_HANZI: dict[str, str] = {
    "shuanglong": "双龙", "xinhua": "新华", "jiuzhou": "九洲", "yingshan": "营山",
    "qiaohe": "桥河", "dongfeng": "东风", "baiyun": "白云", "jinlong": "金龙",
    "fuxing": "复兴", "hongqi": "红旗", "heping": "和平", "minsheng": "民生",
    "xingfu": "幸福", "jinqiao": "金桥", "longtan": "龙潭", "qinglong": "青龙",
    "baishi": "白石", "huaxi": "花溪", "shuangxi": "双溪", "hexing": "和兴",
    "tiantai": "天台", "yangliu": "杨柳", "shitang": "石塘", "yanjing": "盐井",
    "gaoqing": "高青", "xinglong": "兴隆", "changan": "长安", "fenghuang": "凤凰",
    "meilin": "梅林", "songbai": "松柏", "taoyuan": "桃园", "lianhua": "莲花",
    "shuangfeng": "双凤", "jinsha": "金沙", "qingshan": "青山", "baiyang": "白杨",
    "huilong": "回龙", "tianxing": "天星", "guanyin": "观音", "dashu": "大树",
    "chengxi": "城西", "chengdong": "城东", "nanmen": "南门", "beijie": "北街",
    "xinjian": "新建", "lvyuan": "绿园", "jinxiu": "锦绣", "xiangshan": "香山",
    "wufu": "五福", "tangba": "塘坝", "huangjue": "黄桷", "shuangqiao": "双桥",
    "lijia": "李家", "maoping": "茅坪", "yuquan": "玉泉", "pingan": "平安",
    "sanhe": "三合", "sihai": "四海", "wanshou": "万寿", "qingquan": "清泉",
    "shiban": "石板", "zhuyuan": "竹园", "hongyan": "红岩", "xinmin": "新民",
}
COMMUNITY_NAMES: tuple[str, ...] = tuple(COMMUNITY_HANZI)

# Shares of the union's membership by kind: 20+ departments among 200+ members.
PARTNER_KIND_SHARES: dict[PartnerKind, float] = {
    PartnerKind.ENTERPRISE: 0.22,
    PartnerKind.CHARITY: 0.15,
    PartnerKind.SOCIAL_WORK_AGENCY: 0.12,
    PartnerKind.VOLUNTEER_GROUP: 0.20,
    PartnerKind.MERCHANT: 0.21,
    PartnerKind.GOVERNMENT_DEPARTMENT: 0.10,
}

# How each kind of partner's offers reach people by default, with weights; None: the partner
# says nothing (goods reach their workstation's street, people travel 5 km to a service).
# Supermarkets and shops often deliver within 15 km; care agencies take people from up to
# 10 km; a few departments distribute district-wide.
PARTNER_REACH: dict[PartnerKind, dict[str | None, float]] = {
    PartnerKind.MERCHANT: {"delivery:15": 0.45, "delivery:10": 0.15, "pickup:5": 0.15, None: 0.25},
    PartnerKind.ENTERPRISE: {"delivery:15": 0.30, "pickup:10": 0.20, None: 0.50},
    PartnerKind.CHARITY: {"pickup:10": 0.35, "delivery:10": 0.15, None: 0.50},
    PartnerKind.SOCIAL_WORK_AGENCY: {"pickup:10": 0.40, "delivery:10": 0.20, None: 0.40},
    PartnerKind.VOLUNTEER_GROUP: {None: 1.0},
    PartnerKind.GOVERNMENT_DEPARTMENT: {"district": 0.25, "pickup:10": 0.25, None: 0.50},
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

# Named as the district registers them: 区民政局 is 綦江区民政局 on the door.
GOVERNMENT_DEPARTMENTS: tuple[str, ...] = (
    "綦江区民政局", "共青团綦江区委员会", "綦江区妇女联合会", "綦江区残疾人联合会",
    "綦江区卫生健康委员会", "綦江区教育委员会", "綦江区人力资源和社会保障局",
    "綦江区退役军人事务局", "綦江区农业农村委员会", "綦江区总工会", "綦江区红十字会",
    "綦江区乡村振兴局", "綦江区医疗保障局", "綦江区司法局", "綦江区文化和旅游发展委员会",
    "綦江区商务委员会", "綦江区市场监督管理局", "綦江区应急管理局",
    "綦江区住房和城乡建设委员会",
    "綦江区老龄工作委员会", "綦江区关心下一代工作委员会",
    "綦江区科学技术协会", "綦江区民族宗教事务委员会",
    "綦江区财政局",
)
# The trade of an enterprise, between its place and 有限公司.
ENTERPRISE_STEMS: tuple[str, ...] = (
    "智慧养老科技", "健康管理", "齿轮传动", "铝业", "农业开发", "物业管理", "物流", "医疗器械",
    "食品加工", "建筑工程", "新能源", "居家养老服务", "纺织", "茶业", "药业", "康复器材",
)
CHARITY_STEMS: tuple[str, ...] = (
    "慈善会", "爱心慈善协会", "阳光慈善基金会", "关爱老人基金会", "儿童福利协会",
    "温暖之家互助会", "助学基金会", "爱心食物银行", "银龄慈善协会", "携手帮扶基金会",
)
# Trade names (字号) of social work agencies: 綦江区心缘社会工作服务中心.
AGENCY_STEMS: tuple[str, ...] = (
    "心缘", "同心", "和悦", "惠爱", "安和", "明德", "善缘", "家园", "桥心", "连心",
)
VOLUNTEER_STEMS: tuple[str, ...] = (
    "红马甲", "阳光", "青年", "银发", "党员", "巾帼", "医疗", "大学生", "邻里", "雷锋",
    "退休教师", "好邻居",
)
MERCHANT_STEMS: tuple[str, ...] = (
    "生鲜店", "超市", "面包房", "粮油店", "大药房", "理发店", "小面馆", "火锅店", "乳品店",
    "水果店", "服装店", "五金店", "床上用品店", "便利店",
)
# What a second, third... partner of the same name is called: （第二分队）, （二分店）.
BRANCH_WORDS: dict[PartnerKind, str] = {
    PartnerKind.ENTERPRISE: "第{n}分公司",
    PartnerKind.CHARITY: "第{n}分会",
    PartnerKind.SOCIAL_WORK_AGENCY: "第{n}服务站",
    PartnerKind.VOLUNTEER_GROUP: "第{n}分队",
    PartnerKind.MERCHANT: "{n}分店",
    PartnerKind.GOVERNMENT_DEPARTMENT: "第{n}办公室",
}
WORKSTATION_SUFFIX = "慈善工作站"
STUDIO_SUFFIX = "慈善工作室"
CENTRE_PLACE = ("綦江区", "綦江")
CHINESE_DIGITS = "零一二三四五六七八九"

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
    reach_mix: bool = False,
) -> District:
    """Build the seeded hierarchy (centre > workstations > studios > grids) and its partners.

    `reach_mix`: partners state a default reach drawn from a realistic mix (`PARTNER_REACH`:
    supermarkets that deliver, agencies that take people from 10 km, departments serving the
    district). Off, no partner says and the engine's old rule holds, as benchmarks whose own
    eligibility code knows only that rule need.
    """
    if not 1 <= workstations <= len(WORKSTATION_NAMES):
        raise ValueError(f"workstations must be 1..{len(WORKSTATION_NAMES)}")
    if min(studios_per_ws, grids_per_studio, partners) < 1:
        raise ValueError("studios_per_ws, grids_per_studio and partners must be positive")
    rng = random.Random(f"district:{seed}")
    nodes = _build_nodes(rng, workstations, studios_per_ws, grids_per_studio)
    district = District(seed=seed, nodes=nodes, partners=[])
    return District(seed=seed, nodes=nodes,
                    partners=_build_partners(rng, district, partners, reach_mix=reach_mix))


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
    """Name of a workstation: 文龙街道慈善工作站 for a street, 三角镇慈善工作站 for a town."""
    unit = "街道" if ws in STREETS else "镇"
    return f"{WORKSTATION_HANZI[ws]}{unit}{WORKSTATION_SUFFIX}"


def _studio_place(name: str, unit: str) -> str:
    """The community or village of a studio id's tail: 双龙社区, 五福村; 双龙二社区 if repeated."""
    base = name.rstrip("0123456789")
    repeat = name[len(base):]
    return f"{COMMUNITY_HANZI[base]}{_chinese_number(int(repeat)) if repeat else ''}{unit}"


def _chinese_number(n: int) -> str:
    """1..99 in Chinese numerals (二, 十二, 二十); larger numbers in digits."""
    if not 0 < n < 100:
        return str(n)
    tens, ones = divmod(n, 10)
    if not tens:
        return CHINESE_DIGITS[ones]
    return (f"{CHINESE_DIGITS[tens] if tens > 1 else ''}十"
            f"{CHINESE_DIGITS[ones] if ones else ''}")


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
    unit = "社区" if ws in STREETS else "村"
    points = _scatter(rng, ws_point, len(names), STUDIO_RADIUS_KM, STUDIO_GAP_KM, math.inf)
    nodes: list[Node] = []
    for name, point in zip(names, points, strict=True):
        studio_id = f"ws-{ws}-st-{name}"
        place = _studio_place(name, unit)
        nodes.append(Node(node_id=studio_id, level=Level.STUDIO, parent_id=f"ws-{ws}",
                          name=f"{place}{STUDIO_SUFFIX}", location=point))
        grid_points = _scatter(rng, point, grids, GRID_RADIUS_KM, GRID_GAP_KM, GRID_MAX_SPREAD_KM)
        nodes.extend(
            Node(node_id=f"{studio_id}-g{number}", level=Level.GRID, parent_id=studio_id,
                 name=f"{place}第{number}网格", location=grid_point)
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


def _build_partners(rng: random.Random, district: District, count: int, *,
                    reach_mix: bool = False) -> list[Partner]:
    """`count` partners of every kind, with plausible names and home nodes (and default
    reaches, with `reach_mix`)."""
    kinds = [kind for kind, n in _apportion(PARTNER_KIND_SHARES, count).items() for _ in range(n)]
    rng.shuffle(kinds)  # so partner ids say nothing about the kind
    used: set[str] = set()
    partners: list[Partner] = []
    gov_index = 0
    # Reach is drawn from its own stream, so the rest of the district stays as it was.
    reach_rng = random.Random(f"partner-reach:{district.seed}")
    for number, kind in enumerate(kinds, start=1):
        home = _partner_home(rng, district, kind)
        if kind is PartnerKind.GOVERNMENT_DEPARTMENT:
            name = _department_name(gov_index)
            gov_index += 1
        else:
            name = _partner_name(rng, district, kind, home)
        partners.append(Partner(partner_id=f"partner-{number:03d}", name=_unique(name, used, kind),
                                kind=kind, home_node_id=home,
                                default_reach=_partner_reach(reach_rng, kind)
                                if reach_mix else None))
    return partners


def _partner_reach(rng: random.Random, kind: PartnerKind) -> Reach | None:
    """A partner's default reach, drawn from its kind's mix."""
    choices = PARTNER_REACH[kind]
    text = rng.choices(list(choices), weights=list(choices.values()))[0]
    return Reach.parse(text) if text is not None else None


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


def _place_names(district: District, home: str) -> tuple[str, str]:
    """The place words of a partner's name, full and short: 文龙街道 and 文龙, 双龙社区 and 双龙."""
    node = district.node_by_id[home]
    if node.level is Level.CENTRE:
        return CENTRE_PLACE
    full = node.name.removesuffix(WORKSTATION_SUFFIX).removesuffix(STUDIO_SUFFIX)
    tail = home.rsplit("-", 1)[-1].rstrip("0123456789")
    short = WORKSTATION_HANZI[tail] if node.level is Level.WORKSTATION else COMMUNITY_HANZI[tail]
    return full, short


def _partner_name(rng: random.Random, district: District, kind: PartnerKind, home: str) -> str:
    """A plausible name for a non-government partner."""
    full, short = _place_names(district, home)
    at_centre = district.node_by_id[home].level is Level.CENTRE
    if kind is PartnerKind.ENTERPRISE:  # 重庆綦江郭扶茶业有限公司
        return f"重庆綦江{'' if at_centre else short}{rng.choice(ENTERPRISE_STEMS)}有限公司"
    if kind is PartnerKind.CHARITY:  # 文龙街道慈善会
        return f"{full}{rng.choice(CHARITY_STEMS)}"
    if kind is PartnerKind.SOCIAL_WORK_AGENCY:  # 綦江区心缘社会工作服务中心（文龙街道）
        where = "" if at_centre else f"（{full}）"
        return f"綦江区{rng.choice(AGENCY_STEMS)}社会工作服务中心{where}"
    if kind is PartnerKind.VOLUNTEER_GROUP:  # 双龙社区红马甲志愿服务队
        return f"{full}{rng.choice(VOLUNTEER_STEMS)}志愿服务队"
    return f"{short}{rng.choice(MERCHANT_STEMS)}"  # 双龙小面馆


def _branch(name: str, kind: PartnerKind, n: int) -> str:
    """The n-th branch of a name: 双龙社区红马甲志愿服务队（第二分队）, 双龙超市（二分店）."""
    return f"{name}（{BRANCH_WORDS[kind].format(n=_chinese_number(n))}）"


def _department_name(index: int) -> str:
    """A district department; numbered offices past the list (only with huge partner counts)."""
    base = GOVERNMENT_DEPARTMENTS[index % len(GOVERNMENT_DEPARTMENTS)]
    round_ = index // len(GOVERNMENT_DEPARTMENTS)
    return _branch(base, PartnerKind.GOVERNMENT_DEPARTMENT, round_ + 1) if round_ else base


def _unique(name: str, used: set[str], kind: PartnerKind) -> str:
    """The name, or a numbered branch of it if another partner already has it."""
    candidate, branch = name, 2
    while candidate in used:
        candidate = _branch(name, kind, branch)
        branch += 1
    used.add(candidate)
    return candidate
