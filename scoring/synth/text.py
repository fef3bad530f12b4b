"""English and Chinese text templates for the synthetic loan generator (loan purpose, employment and
business descriptions, broker notes, user agents) and `fill`, which renders a template per row from a
frame of slot values in a vectorised way: rows are grouped by template and each group is one polars
`concat_str`. Templates mark slots as `{name}`; a `Templates` set is cut into blocks (one per language
and key) so that the same picking code serves every text column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from features.schema import EMPLOYMENT_STATUSES, LOAN_PURPOSES
from scoring.synth.words import rows, sections

# --- templates ---------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Templates:
    """Templates cut into blocks (one per language and key), so that a row's template is picked from
    two numbers: its block and a uniform draw. Block `b` holds `texts[starts[b] : starts[b] + sizes[b]]`.
    """

    texts: tuple[str, ...]
    starts: npt.NDArray[np.int64]
    sizes: npt.NDArray[np.int64]

    @classmethod
    def of(cls, blocks: Sequence[Sequence[str]]) -> Templates:
        sizes = np.array([len(b) for b in blocks], dtype=np.int64)
        if (sizes == 0).any():
            raise ValueError("every template block needs at least one template")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return cls(tuple(t for b in blocks for t in b), starts, sizes)

    def pick(self, block: npt.NDArray[np.int64], rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """One template index per row; a negative block means no text for that row."""
        safe = np.maximum(block, 0)
        chosen = self.starts[safe] + (rng.random(len(block)) * self.sizes[safe]).astype(np.int64)
        return np.where(block < 0, -1, chosen)


def _template_expr(template: str) -> pl.Expr:
    parts: list[pl.Expr] = []
    pos = 0
    for m in _SLOT.finditer(template):
        if m.start() > pos:
            parts.append(pl.lit(template[pos : m.start()]))
        parts.append(pl.col(m.group(1)))
        pos = m.end()
    if pos < len(template):
        parts.append(pl.lit(template[pos:]))
    return pl.concat_str(parts, separator="")


def fill(templates: Sequence[str], choice: npt.NDArray[np.int64], slots: pl.DataFrame) -> pl.Series:
    """Renders `templates[choice[i]]` with row i of `slots` for every row; a negative choice gives null.

    Rows are sorted by template so each template is rendered once over a contiguous slice, which keeps
    the cost at a few polars kernels per template instead of a Python call per row.
    """
    n = len(choice)
    needed = sorted({m.group(1) for t in templates for m in _SLOT.finditer(t)})
    order = np.argsort(choice, kind="stable")
    sorted_choice = choice[order]
    frame = slots.select(needed)[order] if needed else pl.DataFrame({"_": np.zeros(n)})[order]
    bounds = np.searchsorted(sorted_choice, np.arange(-1, len(templates) + 1) + 0.5)
    pieces = [pl.Series("text", [None] * int(bounds[0]), dtype=pl.String)]
    for t, template in enumerate(templates):
        lo, hi = int(bounds[t]), int(bounds[t + 1])
        if hi > lo:
            part = frame.slice(lo, hi - lo).with_columns(_template_expr(template).alias("_out"))
            pieces.append(part.get_column("_out").alias("text"))
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return pl.concat(pieces).gather(inverse)


# --- free text ---------------------------------------------------------------------------------
# Sections are keyed by features.schema.LOAN_PURPOSES and EMPLOYMENT_STATUSES. PURPOSE_SHORT holds
# the few-word answers (English lines, then Chinese), AROUND the sentences that fit any purpose.

PURPOSE_EN: Final = sections("""
[DEBT_CONSOLIDATION]
I want to consolidate my credit card balances into one lower monthly payment.
Paying off three credit cards that charge over 25% interest.
Debt consolidation. I owe about {amount} across several cards and a store card.
Looking to combine a car repair loan and two credit cards into one loan over {term} months.
Refinance high interest debt so I can finally get ahead.
[HOME_IMPROVEMENT]
Renovating our kitchen: new cabinets, countertops and flooring.
Replacing the roof on our house before winter.
Home repairs, the water heater and furnace both need replacing.
Finishing the basement and adding a bathroom, contractor quoted {amount}.
[VEHICLE]
Buying a used Honda Civic from a private seller.
I need a reliable car to get to work, my old one broke down.
Purchase of a pickup truck, about {amount}. | Refinancing my auto loan at a better rate.
[MEDICAL]
Covering medical bills after surgery that insurance did not pay.
Dental work, two implants not covered by my plan. | Hospital bills for my son's treatment.
IVF treatment, the clinic needs {amount} up front.
[EDUCATION]
Tuition for my last year of nursing school.
Paying for a coding bootcamp so I can change careers. | Tuition and books for the fall semester.
[WEDDING_OR_EVENT]
Paying for our wedding venue and catering this summer.
Wedding expenses: dress, photographer and rings.
My daughter's quinceañera, about {amount} all in.
[WORKING_CAPITAL]
Working capital to cover payroll while we wait on customer invoices.
Bridge cash flow during our slow season.
We need working capital to take on a large new contract.
Covering rent and payroll for the next {term} months while sales pick up.
[EQUIPMENT]
Buying a new commercial oven and refrigeration unit. | Purchase of a second delivery van.
Upgrading our computers and point-of-sale system, quote attached for {amount}.
[INVENTORY]
Stocking up on inventory before the holiday season.
Bulk purchase from our main supplier at a discount. | Buying seasonal stock for spring.
[EXPANSION]
Opening a second location in {city}.
Expanding into the unit next door and hiring two more staff.
Renovating and expanding our shop after {years} at the same address.
[OTHER]
Moving expenses for a new job in {city}. | Funeral costs for my father. | Legal fees.
Buying furniture for my new apartment. | Family vacation and some repairs around the house.
""")
PURPOSE_ZH: Final = sections("""
[DEBT_CONSOLIDATION]
想把几张信用卡的欠款合并成一笔贷款，降低每月还款压力。 | 用于偿还信用卡账单，目前利息太高。
整合债务，大约{amount}，分{term}期还。
[HOME_IMPROVEMENT]
房子装修，主要是厨房和卫生间。 | 给家里换新家具和家电，预算大约{amount}。
老房子翻新，需要重新做水电。
[VEHICLE]
买一辆二手车，上下班用。 | 购买新能源汽车，首付不够，需要贷款{amount}。 | 换一辆车接送孩子上学。
[MEDICAL]
家人住院治疗，需要支付医疗费用。 | 做牙齿种植，医保不报销。 | 父亲做手术，还差{amount}。
[EDUCATION]
支付研究生学费。 | 报名职业技能培训课程，提升自己。 | 孩子的学费和培训费。
[WEDDING_OR_EVENT]
筹备婚礼，包括酒席和婚纱照。 | 办婚礼，需要{amount}左右。
[WORKING_CAPITAL]
补充流动资金，支付员工工资和房租。 | 客户回款慢，需要周转资金。
接了一个大订单，需要垫付{amount}货款。
[EQUIPMENT]
购买新设备，提高生产效率。 | 买一辆货车用于送货。 | 更新电脑和收银系统。
[INVENTORY]
节前备货，需要采购一批货物。 | 向供应商批量进货，可以拿到更低的价格。
[EXPANSION]
在{city}开第二家分店。 | 扩大店面，增加人手。 | 经营{yrs}年了，想扩大规模。
[OTHER]
搬家到{city}，需要一笔安家费用。 | 个人消费，买家具家电。 | 家里有急事需要用钱。
""")
PURPOSE_SHORT: Final = rows("""
consolidate debt|credit card payoff|debt consolidation|pay off cards
kitchen remodel|new roof|home repairs
car|used car purchase|truck
medical bills|dental
school|tuition
wedding|wedding costs
cash flow|payroll and rent|working capital
equipment purchase|new machinery
inventory|stock
expansion|second location
personal|other|vacation|moving
还信用卡|债务整合
装修|房子装修
买车|换车
医疗费|看病
学费|培训费
结婚用|办婚礼
资金周转|周转
买设备|设备
进货|备货
扩大经营|开分店
个人消费|旅游|家庭开支
""")
# Sentences around the core: opener, detail, urgency, closing (English section, then Chinese).
AROUND: Final = sections("""
[OPENER]
Hello, | Hi there. | Dear loan officer, | Thank you for reviewing my application.
To whom it may concern:
[OPENER_ZH]
您好， | 你好！ | 尊敬的审核人员： | 感谢审核我的申请。
[DETAIL]
I have a stable job and have never missed a payment.
I would like to repay it over {term} months.
The monthly payment would be lower than what I pay now.
I have been at my current job for {years}. | I already have part of the money saved.
My credit score has improved a lot over the last two years.
This will save me a lot in interest. | I can provide pay stubs and bank statements if needed.
[DETAIL_ZH]
本人工作稳定，收入可靠，按时还款没有问题。 | 计划分{term}期还清。 | 之前从未逾期。
已经攒了一部分钱，还差一些。 | 在现在的单位工作了{yrs}年。 | 可以提供工资流水。
[URGENT]
Need the money ASAP. | Please approve quickly, this is urgent!! | I need this today if possible.
urgent | Need funds fast, thank you
[URGENT_ZH]
急用！ | 急需用钱，请尽快审批。 | 希望今天就能放款。
[CLOSING]
Thank you. | Thanks! | Thank you for your time. | Appreciate it.
[CLOSING_ZH]
谢谢！ | 谢谢。 | 感谢！
[BROKER]
Client requests {amount} for {plabel}. Income and employment verified by our office.
Submitted on behalf of client. Purpose: {plabel}. Amount requested: {amount}.
Referral from partner broker. Borrower seeks {amount} for {plabel}.
Broker submission - {plabel} - {amount} - documents on file.
[BROKER_ZH]
代客户申请{amount}，用途：{plabel}，收入已核实。
中介代办：客户申请贷款{amount}，用于{plabel}。
[BUSINESS]
{name} is a {label} in {city}. We {activity}.
We {activity}. Family owned, {years} in business, {employees} employees.
{label} in {city}. We {activity}.
Small {label}. We {activity} and have grown every year since we opened in {year}.
We {activity}. | {name}: {label}.
Our company was founded in {year}. We {activity}. Most of our customers are in {city}.
[BUSINESS_ZH]
{name}位于{city}，主要{activity}，已经经营{yrs}年。
公司主营{label}，{activity}，现有员工{employees}人。 | 我们{activity}。 | {label}
本公司成立于{year}年，{activity}，客户主要在{city}。
""")
EMPLOYMENT_EN: Final = sections("""
[EMPLOYED]
I work as a {role} at {employer}. | {role} at {employer}, {years}.
Full-time {role} with {employer}. Paid every two weeks.
I have been with {employer} for about {years}, currently as a {role}. | {role}
Employed full time at {employer} as {role}. Salary plus overtime. | Working at {employer}
[SELF_EMPLOYED]
Self-employed, {srole}, for {years}. | Owner of {employer}.
Freelance {srole}; income varies month to month but averages out. | self employed
I run {employer} with my family and draw a salary from it.
[UNEMPLOYED]
Currently between jobs and looking for work.
Laid off recently, receiving unemployment benefits.
Not working at the moment, my spouse supports the household. | unemployed
[RETIRED]
Retired {role}, living on pension and Social Security. | Retired since {year}. | retired
[STUDENT]
Full-time student at {school}. | Student at {school}, working part-time as a {role}.
college student
""")
EMPLOYMENT_ZH: Final = sections("""
[EMPLOYED]
我在{employer}担任{role}，已工作{yrs}年。 | {employer}，{role}
目前在{employer}上班，职位是{role}，收入稳定。 | {role}，工作{yrs}年了
[SELF_EMPLOYED]
自己做生意，{srole}，干了{yrs}年。 | {employer}负责人。 | 个体户
自由职业，{srole}，收入不太固定。
[UNEMPLOYED]
目前待业，正在找工作。 | 暂时没有工作，家人帮忙支持。 | 待业
[RETIRED]
已退休，每月有退休金。 | {year}年退休，之前是{role}。 | 退休
[STUDENT]
在{school}读书，课余做兼职。 | {school}在读学生。 | 学生
""")

_WK = "AppleWebKit/537.36 (KHTML, like Gecko)"
_SF = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) "
_ANDROID = "Mozilla/5.0 (Linux; Android {android}; {model}) "
_WECHAT = " MicroMessenger/8.0.{wx} NetType/WIFI Language/zh_CN"
# Blocks in the order of the typologies.UA_* families.
USER_AGENTS: Final = Templates.of(
    [
        [
            _WIN + _WK + " Chrome/{v}.0.0.0 Safari/537.36",
            _WIN + _WK + " Chrome/{v}.0.0.0 Safari/537.36",
            _MAC + _WK + " Chrome/{v}.0.0.0 Safari/537.36",
            _WIN + _WK + " Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
            _MAC + _SF + " Version/{iosd} Safari/605.1.15",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{fv}.0) Gecko/20100101 Firefox/{fv}.0",
        ],
        [
            _IPHONE + _SF + " Version/{iosd} Mobile/15E148 Safari/604.1",
            _IPHONE + _SF + " Version/{iosd} Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 10; K) " + _WK + " Chrome/{v}.0.0.0 Mobile Safari/537.36",
            _IPHONE + _SF + " CriOS/{v}.0.0.0 Mobile/15E148 Safari/604.1",
        ],
        [
            _IPHONE + _SF + " Mobile/15E148" + _WECHAT,
            _ANDROID + _WK + " Version/4.0 Chrome/{v}.0.0.0 Mobile Safari/537.36" + _WECHAT,
            _IPHONE + _SF + " Version/{iosd} Mobile/15E148 Safari/604.1",
            _ANDROID + _WK + " Chrome/{v}.0.0.0 MQQBrowser/14.2 Mobile Safari/537.36",
        ],
        ["LendWell/{app} (iPhone; iOS {iosd}; Scale/3.00)", "LendWell/{app} CFNetwork/1494.0.7"],
        ["LendWell/{app} (Linux; U; Android {android}; {model})", "okhttp/4.12.0"],
        [
            "BrokerLink/2.{m} (partner-api)",
            "python-requests/2.{pr}.0",
            "Apache-HttpClient/4.5.14 (Java/17.0.9)",
            _WIN + _WK + " Chrome/{v}.0.0.0 Safari/537.36",
        ],
        [
            "Mozilla/5.0 (X11; Linux x86_64) " + _WK + " HeadlessChrome/{v}.0.0.0 Safari/537.36",
            "python-requests/2.{pr}.0",
            "curl/8.{m}.0",
            "Go-http-client/1.1",
        ],
        [
            "Mozilla/5.0 (X11; Linux x86_64) " + _WK + " Chrome/{v}.0.0.0 Safari/537.36",
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{fv}.0) Gecko/20100101 Firefox/{fv}.0",
        ],
    ]
)


PURPOSES: Final = Templates.of(
    [PURPOSE_EN[p] for p in LOAN_PURPOSES] + [PURPOSE_ZH[p] for p in LOAN_PURPOSES]
)
SHORT_PURPOSES: Final = Templates.of(PURPOSE_SHORT)
SENTENCES: Final = {
    key: Templates.of([AROUND[key], AROUND[key + "_ZH"]])
    for key in ("OPENER", "DETAIL", "URGENT", "CLOSING", "BROKER", "BUSINESS")
}
EMPLOYMENT: Final = Templates.of(
    [EMPLOYMENT_EN[s] for s in EMPLOYMENT_STATUSES] + [EMPLOYMENT_ZH[s] for s in EMPLOYMENT_STATUSES]
)
