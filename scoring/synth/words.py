"""Word and number pools for the synthetic loan generator: names (with pinyin for Chinese names),
cities, districts, streets, employers, industries (real NAICS codes with what such a business does, in
English and Chinese), banks and network ranges, for the United States and China. The flat tables at the
end list the United States entries first, then the Chinese ones, so that one latent index per row picks
an entry whatever the country.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import polars as pl


def words(block: str) -> tuple[str, ...]:
    """Parses entries separated by white space."""
    return tuple(block.split())


def rows(block: str) -> tuple[tuple[str, ...], ...]:
    """Parses one record per line (or per `;`), fields separated by `|`."""
    return tuple(tuple(r.strip().split("|")) for r in block.replace(";", "\n").strip().splitlines())


def items(block: str) -> tuple[str, ...]:
    """Parses entries separated by `|` or line breaks."""
    return tuple(i.strip() for i in block.replace("\n", "|").split("|") if i.strip())


def pinyin(block: str) -> tuple[tuple[str, str], ...]:
    """Parses `王wang 李li`: one Chinese character followed by its pinyin."""
    return tuple((w[0], w[1:]) for w in block.split())


def sections(block: str) -> dict[str, tuple[str, ...]]:
    """Parses templates grouped under `[KEY]` header lines, separated by ` | ` or line breaks."""
    out: dict[str, list[str]] = {}
    key = ""
    for line in block.strip().splitlines():
        if line.startswith("[") and line.endswith("]"):
            key = line[1:-1]
            out[key] = []
        else:
            out[key].extend(t.strip() for t in line.split(" | "))
    return {k: tuple(v) for k, v in out.items()}


def pairs(block: str) -> tuple[tuple[str, str], ...]:
    """Parses `name=domain; name=domain`."""
    items = (item.strip().split("=") for item in block.split(";"))
    return tuple((name, domain) for name, domain in items)


# --- people ------------------------------------------------------------------------------------

US_FIRST_MALE: Final = words("""
James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew
Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason
Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel
Gregory Alexander Frank Patrick Raymond Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas
Zachary Peter Kyle Noah Ethan Jeremy Walter Christian Keith Roger Terry Austin Sean Gerald Carl Dylan
Arthur Lawrence Jordan Jesse Bryan Bruce Gabriel Logan Alan Juan Albert Elijah Wayne Vincent Mason
Roy Ralph Bobby Russell Bradley Philip Luis Carlos Miguel Wei Minh Raj Omar Darnell Tremaine Hiroshi
""")
US_FIRST_FEMALE: Final = words("""
Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Sandra
Margaret Ashley Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Dorothy Rebecca
Sharon Laura Cynthia Amy Kathleen Angela Shirley Brenda Emma Anna Pamela Nicole Samantha Katherine
Christine Helen Debra Rachel Carolyn Janet Maria Catherine Heather Diane Olivia Julie Joyce Victoria
Ruth Virginia Lauren Kelly Christina Joan Evelyn Judith Andrea Hannah Megan Cheryl Jacqueline Martha
Madison Teresa Gloria Sara Janice Ann Kathryn Abigail Sophia Frances Jean Alice Judy Isabella Julia
Grace Amber Denise Danielle Marilyn Beverly Charlotte Natalie Theresa Diana Brittany Doris Kayla
Alexis Lori Guadalupe Mei Priya Aaliyah Keisha Yesenia Thi
""")
US_LAST: Final = words("""
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark
Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams
Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz
Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson
Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray
Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Chen Wang
Tran Shah Okafor Kowalski Schmidt Murray
""")
# Chinese names come with their pinyin so that email local parts can be derived from them.
CN_SURNAMES: Final = pinyin("""
王wang 李li 张zhang 刘liu 陈chen 杨yang 黄huang 赵zhao 吴wu 周zhou 徐xu 孙sun 马ma 朱zhu
胡hu 郭guo 何he 高gao 林lin 罗luo 郑zheng 梁liang 谢xie 宋song 唐tang 许xu 韩han 冯feng
邓deng 曹cao 彭peng 曾zeng 肖xiao 田tian 董dong 袁yuan 潘pan 于yu 蒋jiang 蔡cai 余yu 杜du
叶ye 程cheng 苏su 魏wei 吕lv 丁ding 任ren 沈shen
""")
_CN_MALE_CHARS: Final = pinyin("""
伟wei 强qiang 磊lei 军jun 勇yong 杰jie 涛tao 明ming 超chao 刚gang 辉hui 鹏peng 华hua 飞fei
鑫xin 斌bin 宇yu 浩hao 凯kai 健jian 俊jun 旭xu 龙long 阳yang 博bo 文wen 晨chen 睿rui 泽ze
天tian
""")
_CN_FEMALE_CHARS: Final = pinyin("""
芳fang 娜na 敏min 静jing 丽li 艳yan 娟juan 霞xia 秀xiu 玲ling 燕yan 红hong 婷ting 雪xue
琳lin 欣xin 佳jia 倩qian 颖ying 慧hui 莉li 梅mei 洁jie 悦yue 萱xuan 怡yi 涵han 琪qi 雨yu
梦meng
""")


def _given_names(chars: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """One- and two-character given names built from a fixed character list (same order every run)."""
    singles = [(c, p) for c, p in chars]
    pairs = [(a + b, pa + pb) for i, (a, pa) in enumerate(chars) for b, pb in chars[i % 7 :: 7]]
    return tuple(singles + pairs)


CN_GIVEN_MALE: Final = _given_names(_CN_MALE_CHARS)
CN_GIVEN_FEMALE: Final = _given_names(_CN_FEMALE_CHARS)

# --- places ------------------------------------------------------------------------------------

# city | state | zip prefix | area codes | UTC offset (standard time) | relative weight
US_CITIES: Final = rows("""
New York|NY|100|212 646 917|-5|60; Brooklyn|NY|112|718 347|-5|30
Los Angeles|CA|900|213 323 310|-8|45; San Diego|CA|921|619 858|-8|16
San Francisco|CA|941|415 628|-8|10; San Jose|CA|951|408 669|-8|11
Sacramento|CA|958|916 279|-8|6; Chicago|IL|606|312 773 872|-6|30
Houston|TX|770|713 281 832|-6|26; Dallas|TX|752|214 469 972|-6|15
Austin|TX|787|512 737|-6|11; San Antonio|TX|782|210 726|-6|17
Phoenix|AZ|850|602 480 623|-7|19; Philadelphia|PA|191|215 267|-5|18
Pittsburgh|PA|152|412 878|-5|4; Jacksonville|FL|322|904|-5|11
Miami|FL|331|305 786|-5|9; Orlando|FL|328|407 321|-5|5
Tampa|FL|336|813 656|-5|5; Atlanta|GA|303|404 470 678|-5|8
Charlotte|NC|282|704 980|-5|10; Raleigh|NC|276|919 984|-5|5
Columbus|OH|432|614 380|-5|10; Cleveland|OH|441|216|-5|4
Detroit|MI|482|313|-5|7; Indianapolis|IN|462|317 463|-5|9
Nashville|TN|372|615 629|-6|7; Memphis|TN|381|901|-6|6
Denver|CO|802|303 720|-7|8; Seattle|WA|981|206|-8|8
Portland|OR|972|503 971|-8|7; Las Vegas|NV|891|702 725|-8|7
Boston|MA|021|617 857|-5|7; Baltimore|MD|212|410 443|-5|6
Washington|DC|200|202|-5|7; Minneapolis|MN|554|612|-6|4
Kansas City|MO|641|816|-6|5; St. Louis|MO|631|314|-6|3
Milwaukee|WI|532|414|-6|6; Louisville|KY|402|502|-5|6
Oklahoma City|OK|731|405|-6|7; Albuquerque|NM|871|505|-7|6
Salt Lake City|UT|841|801 385|-7|2; New Orleans|LA|701|504|-6|4
Newark|NJ|071|973 862|-5|3
""")
# city | province | postal prefix | relative weight | district:resident-ID region code ...
CN_CITIES: Final = rows("""
北京市|北京市|100|22|东城区:110101 朝阳区:110105 丰台区:110106 海淀区:110108
上海市|上海市|200|25|黄浦区:310101 徐汇区:310104 静安区:310106 浦东新区:310115 闵行区:310112
广州市|广东省|510|19|荔湾区:440103 越秀区:440104 海珠区:440105 天河区:440106 白云区:440111
深圳市|广东省|518|18|罗湖区:440303 福田区:440304 南山区:440305 宝安区:440306 龙岗区:440307
成都市|四川省|610|21|锦江区:510104 青羊区:510105 武侯区:510107
杭州市|浙江省|310|12|拱墅区:330105 西湖区:330106 滨江区:330108 余杭区:330110
武汉市|湖北省|430|13|江汉区:420103 汉阳区:420105 武昌区:420106 洪山区:420111
南京市|江苏省|210|9|玄武区:320102 秦淮区:320104 建邺区:320105 鼓楼区:320106
西安市|陕西省|710|13|碑林区:610103 未央区:610112 雁塔区:610113 长安区:610116
重庆市|重庆市|400|30|渝中区:500103 江北区:500105 南岸区:500108 渝北区:500112
天津市|天津市|300|13|和平区:120101 河西区:120103 南开区:120104 滨海新区:120116
苏州市|江苏省|215|12|吴中区:320506 相城区:320507 姑苏区:320508
郑州市|河南省|450|12|中原区:410102 二七区:410103 金水区:410105
长沙市|湖南省|410|10|芙蓉区:430102 天心区:430103 岳麓区:430104 雨花区:430111
青岛市|山东省|266|10|市南区:370202 市北区:370203 黄岛区:370211 崂山区:370212
东莞市|广东省|523|10|南城街道:441900 东城街道:441900 松山湖:441900
合肥市|安徽省|230|9|瑶海区:340102 庐阳区:340103 蜀山区:340104 包河区:340111
沈阳市|辽宁省|110|9|和平区:210102 沈河区:210103 皇姑区:210105 铁西区:210106
厦门市|福建省|361|5|思明区:350203 海沧区:350205 湖里区:350206 集美区:350211
昆明市|云南省|650|8|五华区:530102 盘龙区:530103 官渡区:530111 西山区:530112
""")
US_STREETS: Final = words("""
Main Oak Pine Maple Cedar Elm Washington Lake Hill Park Sunset Lincoln Jackson Church Highland River
Franklin Madison Ridge Walnut Spring Center Willow Meadow Chestnut Forest Jefferson Adams Cherry
""")
US_STREET_SUFFIXES: Final = words("St Ave Rd Dr Ln Blvd Ct Way Pl")
CN_STREETS: Final = words("""
人民路 中山路 建设路 解放路 和平路 文化路 长江路 新华路 胜利路 青年路 科技路 工业路 东风路 光明路
幸福路 学院路 滨江大道 世纪大道 花园路 朝阳路
""")

# --- employers and industries ------------------------------------------------------------------

# name | email domain
US_EMPLOYERS: Final = pairs("""
Walmart=walmart.com; Amazon=amazon.com; Target=target.com; Kroger=kroger.com;
The Home Depot=homedepot.com; UPS=ups.com; FedEx=fedex.com;
CVS Health=cvshealth.com; Walgreens=walgreens.com; Starbucks=starbucks.com;
McDonald's=mcdonalds.com; Bank of America=bankofamerica.com;
Wells Fargo=wellsfargo.com; JPMorgan Chase=jpmchase.com; AT&T=att.com;
Verizon=verizon.com; Kaiser Permanente=kp.org; HCA Healthcare=hcahealthcare.com;
Lowe's=lowes.com; Costco=costco.com; Tesla=tesla.com; Google=google.com;
Microsoft=microsoft.com; IBM=ibm.com; Deloitte=deloitte.com;
Accenture=accenture.com; General Motors=gm.com; Ford Motor Company=ford.com;
Boeing=boeing.com; U.S. Postal Service=usps.gov; Marriott=marriott.com;
Delta Air Lines=delta.com; Mayo Clinic=mayo.edu
""")
CN_EMPLOYERS: Final = pairs("""
华为技术有限公司=huawei.com; 腾讯科技（深圳）有限公司=tencent.com;
阿里巴巴（中国）有限公司=alibaba-inc.com; 中国移动通信集团=chinamobile.com; 中国工商银行=icbc.com.cn;
国家电网有限公司=sgcc.com.cn; 北京京东世纪贸易有限公司=jd.com; 北京三快在线科技有限公司=meituan.com;
比亚迪股份有限公司=byd.com; 顺丰速运有限公司=sf-express.com; 小米科技有限责任公司=xiaomi.com;
中国平安保险（集团）股份有限公司=pingan.com.cn; 海尔集团=haier.com;
珠海格力电器股份有限公司=gree.com.cn; 北京字节跳动科技有限公司=bytedance.com;
中国建筑集团有限公司=cscec.com; 中国银行=boc.cn; 招商银行=cmbchina.com; 富士康科技集团=foxconn.com;
上海汽车集团股份有限公司=saicmotor.com
""")
# NAICS code | weight | revenue per employee (thousand USD) | median employees | English label |
# Chinese label | English name word | Chinese name word
INDUSTRIES: Final = rows("""
722511|6|70|12|full-service restaurant|餐饮服务|Bistro|餐饮管理
722513|5|60|9|fast-food restaurant|快餐|Grill|快餐
722515|3|55|5|coffee and tea shop|茶饮|Coffee|茶饮
445110|3|220|10|grocery store|超市零售|Market|商贸
458110|3|160|4|clothing store|服装零售|Apparel|服饰
541511|4|190|5|software development firm|软件开发|Software|网络科技
541512|3|180|6|IT services firm|信息技术服务|Tech Solutions|信息技术
541110|2|210|4|law firm|法律服务|Law Group|法律咨询
541211|2|150|5|accounting practice|会计服务|CPA Group|财务咨询
541810|2|170|5|advertising agency|广告|Media|广告传媒
541921|1|80|2|photography studio|摄影|Photography|摄影
236118|4|190|6|home remodeling contractor|装修工程|Builders|装饰工程
238220|4|160|7|plumbing and HVAC contractor|水暖安装|Plumbing & Heating|机电安装
238210|3|160|7|electrical contractor|电气安装|Electric|电气工程
484110|3|170|6|local trucking company|货物运输|Freight|物流
484121|2|210|8|long-haul trucking company|长途货运|Transport|运输
492210|2|90|6|courier and delivery service|同城配送|Courier|配送服务
811111|4|120|5|auto repair shop|汽车维修|Auto Repair|汽车服务
812111|2|55|3|barber shop|理发|Barbers|美发
812112|3|60|5|beauty salon|美容美发|Salon|美容
621210|2|180|8|dental practice|口腔诊所|Dental|口腔门诊
621111|2|220|10|medical clinic|诊所|Medical Group|医疗管理
713940|2|65|8|fitness studio|健身|Fitness|健身
611691|2|60|6|tutoring center|教育培训|Learning Center|教育咨询
531210|3|160|4|real estate brokerage|房产中介|Realty|房地产经纪
423430|1|650|8|computer equipment wholesaler|电脑设备批发|Systems Supply|电子科技
424410|1|800|10|grocery wholesaler|食品批发|Foods Distribution|食品贸易
311811|2|75|6|bakery|烘焙|Bakery|食品
332710|2|150|12|machine shop|机械加工|Machine Works|机械制造
315250|1|120|15|apparel manufacturer|服装加工|Garments|服装
561720|2|45|12|janitorial service|保洁服务|Cleaning Services|保洁服务
561730|3|70|7|landscaping company|园林绿化|Landscaping|园林绿化工程
624410|2|50|9|child care center|托育服务|Kids Academy|托育服务
459310|1|90|3|florist|花店|Flowers|花艺
""")
# What the business does, per industry (same order as INDUSTRIES): English | Chinese.
ACTIVITIES: Final = rows("""
serve home-style Italian food for lunch and dinner|经营一家中餐馆，提供午餐和晚餐
sell burgers, fries and shakes from a busy counter-service spot|经营快餐店，主要做外卖和堂食
run a coffee shop that also sells pastries and smoothies|经营奶茶和咖啡饮品店
operate a neighborhood grocery with fresh produce and a deli|经营社区超市，销售生鲜和日用品
sell women's and children's clothing in store and online|销售女装和童装，线上线下同时经营
build custom web and mobile apps for small businesses|为企业开发定制软件和小程序
install and manage networks and computers for local offices|为中小企业提供网络搭建和IT运维服务
provide legal services focused on real estate and family law|提供法律咨询和合同审查服务
do tax returns and bookkeeping for individuals and small firms|为小微企业提供代理记账和税务申报服务
run digital advertising campaigns for restaurants and retailers|为商家提供广告策划和新媒体运营
shoot weddings, family portraits and school photos|提供婚纱摄影和证件照拍摄
remodel kitchens and bathrooms in single-family homes|承接家庭装修和旧房翻新
install and repair plumbing, heating and air conditioning|承接水暖和空调安装维修
do residential and commercial electrical work|承接住宅和商铺的电气安装工程
haul freight for local warehouses and retailers|提供本地货物运输服务
run long-haul truckload freight across several states|经营长途干线货运，有自有车辆
deliver packages and food orders across the metro area|提供同城快递和外卖配送
repair and service cars and light trucks|经营汽车维修保养店
run a barber shop with four chairs|经营理发店，有四个理发位
offer hair, nail and skin care services|提供美发、美甲和皮肤护理服务
run a general and cosmetic dental practice|经营口腔门诊，提供洗牙、种植等服务
run a primary care clinic|经营社区诊所，提供常见病诊疗
run a fitness studio with group classes and personal training|经营健身房，提供私教和团课
tutor K-12 students in math, reading and test prep|提供中小学课外辅导
help families buy, sell and rent homes|提供二手房买卖和租赁中介服务
resell computers, servers and networking gear to businesses|批发电脑、服务器和网络设备
distribute groceries to restaurants and corner stores|向餐馆和便利店批发食品
bake bread, cakes and pastries sold in our shop|经营烘焙店，制作面包和蛋糕
machine custom metal parts for manufacturers|为制造企业加工金属零部件
cut and sew garments for regional brands|为服装品牌加工生产服装
clean offices and commercial buildings at night|为写字楼和商场提供保洁服务
do lawn care, planting and snow removal|承接小区和公司的绿化养护工程
run a licensed day care for infants and preschoolers|经营托育中心，照顾三岁以下婴幼儿
sell flowers and arrangements for weddings and events|经营花店，承接婚礼和活动花艺
""")
# Descriptions that fit no industry: what shell companies write, and a few honest vague owners.
VAGUE_ACTIVITIES: Final = rows("""
provide consulting and trading services to clients worldwide|从事国际贸易和商务咨询
import and export various goods|经营进出口贸易
offer business solutions and investment management|提供投资管理和企业服务
provide general services|提供各类综合服务
""")
SHELL_NAME_WORDS: Final = rows("""
Global Trading|国际贸易
Holdings|投资管理
International Group|商务咨询
Capital Partners|实业
Ventures|供应链管理
""")
BRANDS_EN: Final = words("""
Summit Golden Pioneer Evergreen Lakeside Metro Liberty Coastal Northstar Riverside Keystone Heritage
Prime Silverline Cardinal Redwood Harbor Granite Sunrise Eagle
""")
BRANDS_ZH: Final = words("鑫源 华盛 恒通 宏达 金辉 永兴 瑞丰 嘉禾 汇通 天成 博远 众诚 联创 盛世 德信 佳美")
ROLES_EN: Final = items("""
cashier|warehouse associate|registered nurse|software engineer|teacher|truck driver|sales associate
customer service representative|accountant|electrician|project manager|administrative assistant
line cook|barista|mechanic|pharmacist|marketing coordinator|operations manager|dental hygienist
security officer|store manager|delivery driver|HR specialist|data analyst|machine operator
nursing assistant|bank teller|construction worker|financial analyst|receptionist
""")
ROLES_ZH: Final = words("""
销售专员 软件工程师 护士 教师 会计 司机 客服专员 行政助理 厨师 店长 工程师 产品经理 快递员 仓库管理员
财务主管 技术员 设计师 医生 公务员 保安 人事专员 数据分析师 操作工 银行柜员 施工员 收银员 前台 运营专员
""")
SELF_ROLES_EN: Final = items("""
contractor|graphic designer|rideshare driver|photographer|consultant|hair stylist|real estate agent
handyman|freelance writer|personal trainer|tutor|online seller
""")
SELF_ROLES_ZH: Final = words("开网店 跑滴滴 做设计 做装修 做微商 摆小吃摊 做家教 做代购 开出租车 做摄影")
SCHOOLS_EN: Final = items("""
a community college|Ohio State|the University of Texas|Arizona State University
Georgia State University|NYU|UCLA|Penn State|a state university
""")
SCHOOLS_ZH: Final = words(
    "复旦大学 浙江大学 武汉大学 四川大学 中山大学 本地职业技术学院 一所师范大学 南京大学"
)
PURPOSE_LABELS: Final = rows("""
debt consolidation|债务整合
home improvement|房屋装修
a vehicle purchase|购车
medical expenses|医疗费用
education|教育
a wedding|婚礼
working capital|流动资金
equipment|设备采购
inventory|备货
business expansion|扩大经营
personal use|个人消费
""")


# --- pools: one flat table per kind (United States first, then China), indexed by latent codes ---


def series(values: Any) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String)


def ranges(*sizes: int) -> list[tuple[int, int]]:
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [(int(s), int(k)) for s, k in zip(starts, sizes, strict=True)]


CN_GIVEN = CN_GIVEN_MALE + CN_GIVEN_FEMALE
FIRST = series([*US_FIRST_MALE, *US_FIRST_FEMALE, *(g for g, _ in CN_GIVEN)])
FIRST_ASCII = series([n.lower() for n in (*US_FIRST_MALE, *US_FIRST_FEMALE)] + [p for _, p in CN_GIVEN])
# (country, gender) -> (start, size) in FIRST
FIRST_RANGES = ranges(len(US_FIRST_MALE), len(US_FIRST_FEMALE), len(CN_GIVEN_MALE), len(CN_GIVEN_FEMALE))
LAST = series([*US_LAST, *(s for s, _ in CN_SURNAMES)])
LAST_ASCII = series([n.lower() for n in US_LAST] + [p for _, p in CN_SURNAMES])
CITIES = US_CITIES + CN_CITIES
N_US_CITIES = len(US_CITIES)
CITY = series(c[0] for c in CITIES)
REGION = series(c[1] for c in CITIES)
POSTAL = series(c[2] for c in CITIES)
CITY_OFFSET = np.array([int(c[4]) for c in US_CITIES] + [8] * len(CN_CITIES))
US_CITY_P = np.array([float(c[5]) for c in US_CITIES])
CN_CITY_P = np.array([float(c[3]) for c in CN_CITIES])
AREA_CODES = [c[3].split() for c in US_CITIES]
DISTRICTS = [d.split(":") for c in CN_CITIES for d in c[4].split()]
DISTRICT = series(d[0] for d in DISTRICTS)
DISTRICT_CODE = np.array([int(d[1]) for d in DISTRICTS])
DISTRICT_RANGES = ranges(*(len(c[4].split()) for c in CN_CITIES))
STREET = series([*US_STREETS, *CN_STREETS])
SUFFIX = series(US_STREET_SUFFIXES)
EMPLOYERS = US_EMPLOYERS + CN_EMPLOYERS
EMPLOYER = series(e[0] for e in EMPLOYERS)
FREEMAIL = words("""
gmail.com yahoo.com outlook.com hotmail.com icloud.com aol.com comcast.net att.net proton.me
qq.com 163.com 126.com sina.com foxmail.com 139.com
""")
FREEMAIL_US = np.array([46, 14, 8, 7, 9, 4, 4, 2, 1, 1, 0, 0, 0, 0, 0], dtype=float)
FREEMAIL_CN = np.array([6, 1, 4, 0, 0, 0, 0, 0, 0, 42, 25, 9, 5, 5, 3], dtype=float)
DOMAIN = series([*FREEMAIL, *(e[1] for e in EMPLOYERS)])
HANDLES = series(
    words(
        "sunny skater gamer blue tiger dragon music happy lucky star ninja coffee soccer angel rocky shadow"
    )
    + words("xiaoyu tiantian lele doudou")
)
IND = INDUSTRIES
IND_P = np.array([float(i[1]) for i in IND])
IND_RPE = np.array([float(i[2]) * 1000 for i in IND])
IND_EMPLOYEES = np.array([float(i[3]) for i in IND])
IND_CODE = series(i[0] for i in IND)
# Text pools hold the English entries then the Chinese ones, so index = lang * size + i.
LABEL = series([*(i[4] for i in IND), *(i[5] for i in IND), "company", "公司"])
ACTIVITY = series(
    [*(a[0] for a in ACTIVITIES), *(a[1] for a in ACTIVITIES)]
    + [a[0] for a in VAGUE_ACTIVITIES]
    + [a[1] for a in VAGUE_ACTIVITIES]
)
NAME_WORD = series(
    [*(i[6] for i in IND), *(i[7] for i in IND)]
    + [w[0] for w in SHELL_NAME_WORDS]
    + [w[1] for w in SHELL_NAME_WORDS]
)
BRAND_EN, BRAND_ZH = series(BRANDS_EN), series(BRANDS_ZH)
LEGAL_SUFFIX = series(["LLC", "Inc.", "Co.", "Corp.", "Ltd."])
ROUTING_US = words("021000021 026009593 121000248 021000089 091000022 043000096 061000104 051405515")
NEOBANK_US = words("031101279 103100195 084106768")
BANK_CN = words("102 103 104 105 301 308 403")
ROUTING = series([*ROUTING_US, *NEOBANK_US, *BANK_CN, "323"])  # 323: WeBank, online only
ISP_US = np.array([24, 50, 66, 67, 68, 69, 71, 72, 73, 74, 75, 76, 96, 97, 98, 99, 107, 108, 173, 174])
ISP_CN = np.array([36, 39, 58, 59, 60, 61, 101, 106, 110, 111, 112, 113, 114, 115, 116, 117, 183])
HOSTING = np.array([45, 64, 104, 138, 139, 143, 157, 159, 165, 167, 178, 185, 188, 198, 206, 209])
IPV6_PREFIX = series(["2600:1700:", "2601:646:", "2603:8000:", "240e:388:", "2408:8456:", "2409:8a1e:"])
MODELS = series(
    ["SM-S918B", "Pixel 8", "SM-A546B", "M2102J20SG", "V2241A", "PJZ110", "22081212C", "moto g 5G"]
)

ROLE = series([*ROLES_EN, *ROLES_ZH])
SELF_ROLE = series([*SELF_ROLES_EN, *SELF_ROLES_ZH])
SCHOOL = series([*SCHOOLS_EN, *SCHOOLS_ZH])
PURPOSE_LABEL = series([*(p[0] for p in PURPOSE_LABELS), *(p[1] for p in PURPOSE_LABELS)])
