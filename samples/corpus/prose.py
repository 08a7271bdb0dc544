"""English prose for the corpus: sentences written for it, drawn into paragraphs by a seed.

Why written sentences and not lorem ipsum: the OCR engines read English with an English
dictionary in mind (Tesseract's ``eng``), hyphenation needs real words (TeX hyphenates
with English patterns), and word recall only means something on words a reader knows.
A seed picks and orders the sentences, so every document is different and every build
of it is the same.
"""

from __future__ import annotations

import random

TOPICS: dict[str, tuple[str, ...]] = {
    "hydrology": (
        "The catchment drains an area of roughly 412 square kilometres, most of it forested upland.",
        "Discharge was measured every fifteen minutes at the gauging station below the confluence.",
        "During the spring thaw the river carried almost three times its average summer volume.",
        "Sediment cores taken from the reservoir floor show a clear layer deposited by the flood of 1987.",
        "Groundwater levels in the observation wells responded within two days to heavy rainfall.",
        "The hydrological model underestimated peak flows whenever snowmelt and rain coincided.",
        "Evaporation from the open water surface was estimated with the Penman equation.",
        "A rating curve relates the water stage at the gauge to the discharge through the section.",
        "Several tributaries dry out completely in late summer, leaving isolated pools behind.",
        "Infiltration capacity varies strongly between the clay soils of the valley and the sandy ridges.",
        "The calibration period covered eleven hydrological years, from October 2008 to September 2019.",
        "Uncertainty in the precipitation input dominates the uncertainty of the simulated runoff.",
        "Beavers have rebuilt several dams on the upper reaches, which slows the flood wave noticeably.",
        "Water temperature rose by 1.4 degrees over the decade, with the largest change in August.",
        "The weir was rebuilt in concrete after the original timber structure failed during a storm.",
        "Nitrate concentrations remain highest downstream of the intensively farmed lowland plots.",
        "Most of the annual recharge happens between November and March, when evaporation is low.",
        "The flood warning service issues an alert when the forecast stage exceeds 3.2 metres.",
        "Field technicians replaced the pressure transducer twice because of silt in the housing.",
        "Hourly rainfall intensities above 30 millimetres were recorded on only four occasions.",
    ),
    "software": (
        "The scheduler assigns each incoming request to the least loaded worker in the pool.",
        "Configuration files are validated against a schema before the service accepts them.",
        "A failed health check removes the instance from the load balancer within ten seconds.",
        "The library exposes a small synchronous interface and hides the asynchronous machinery underneath.",
        "Every release is built twice on different machines to confirm that the artifacts are identical.",
        "Logging at debug level roughly doubled the latency of the slowest requests.",
        "The cache stores compiled templates, so a restart costs about forty seconds of warming up.",
        "Backward compatibility of the wire format is checked by replaying recorded traffic.",
        "Memory usage grows linearly with the number of open connections until the limit is reached.",
        "The command prints a summary of every job it started and exits with a non-zero status on failure.",
        "Administrators can override any default by setting the corresponding environment variable.",
        "Temporary files are written next to their destination and renamed once they are complete.",
        "The parser recovers from malformed input by skipping to the next record boundary.",
        "Authentication tokens expire after twelve hours and must then be requested again.",
        "Profiling showed that most of the time was spent serializing intermediate results.",
        "The migration tool converts existing databases in place and keeps a backup of each table.",
        "Each plugin declares the interfaces it implements in a small manifest file.",
        "Retries use exponential backoff with a random component to avoid synchronized bursts.",
        "The documentation describes every option together with its default value and its unit.",
        "Version 4.19.0 fixed a buffer overflow in the decoder that affected malformed certificates.",
    ),
    "materials": (
        "The specimens were annealed at 650 degrees Celsius for two hours and cooled in air.",
        "Fatigue cracks initiated at inclusions near the surface in nearly every sample.",
        "Hardness increased steadily with the volume fraction of the reinforcing particles.",
        "The fracture surfaces were examined in a scanning electron microscope after testing.",
        "Residual stresses were measured by X-ray diffraction on the polished cross sections.",
        "Corrosion rates in the salt spray chamber differed by a factor of five between coatings.",
        "The tensile strength of the welded joints reached ninety percent of the base metal.",
        "Grain refinement improved toughness without a measurable loss of ductility.",
        "Thermal expansion coefficients were determined between room temperature and 800 degrees.",
        "Porosity in the additively manufactured parts was concentrated along the layer boundaries.",
        "The composite laminates delaminated at lower loads when they had absorbed moisture.",
        "A thin oxide film forms within minutes and protects the alloy from further attack.",
        "Creep tests at constant load lasted up to three thousand hours before rupture.",
        "Microstructural characterization revealed elongated grains parallel to the rolling direction.",
        "The polymer becomes brittle below its glass transition temperature of about minus twenty degrees.",
        "Indentation measurements were repeated at twelve positions to average out local scatter.",
        "Heat treatment dissolved the coarse precipitates and restored the original hardness.",
        "Specimens with machined notches failed after a fifth of the cycles of smooth specimens.",
        "The elastic modulus was obtained from the initial linear part of the stress strain curve.",
        "Surface roughness was reduced from 3.2 to 0.4 micrometres by electrochemical polishing.",
    ),
    "transport": (
        "Passenger counts on the tram network recovered to their earlier level within two years.",
        "The new timetable shortens the interval between trains to six minutes during rush hour.",
        "Cycling accounts for nearly a quarter of all trips shorter than five kilometres.",
        "Traffic signals along the corridor were coordinated to favour buses approaching the junctions.",
        "The survey asked residents how they travelled to work on an ordinary weekday.",
        "Congestion charges reduced inbound traffic by fourteen percent in the first year.",
        "Bus stops were moved closer to the entrances of the hospital and the university.",
        "Freight deliveries in the old town are restricted to the early morning hours.",
        "The bridge closure diverted about eleven thousand vehicles a day onto neighbouring streets.",
        "Ticket validation data allow the operator to estimate transfers between lines.",
        "Average travel speeds in the centre have barely changed over the past three decades.",
        "The regional railway electrified its last diesel line in the autumn of 2021.",
        "Parking occupancy was recorded every hour by observers walking a fixed route.",
        "Pedestrian crossings with refuge islands had markedly fewer serious accidents.",
        "Night buses run every thirty minutes on the five busiest routes of the network.",
        "The accessibility study mapped step-free routes between all major interchanges.",
        "Electric buses recharge at the terminal stops during their scheduled layover.",
        "Commuters living beyond the ring road depend on park and ride facilities.",
        "A shared bicycle is used on average four times a day in the central districts.",
        "The transport authority publishes punctuality figures for every line each month.",
    ),
}

#: Words the captions, tables and figure labels take from their document's topic.
TOPIC_NOUNS: dict[str, tuple[str, ...]] = {
    "hydrology": ("Discharge", "Rainfall", "Recharge", "Stage", "Runoff", "Storage"),
    "software": ("Latency", "Requests", "Workers", "Errors", "Throughput", "Memory"),
    "materials": ("Hardness", "Strength", "Porosity", "Modulus", "Strain", "Cycles"),
    "transport": ("Passengers", "Trips", "Delays", "Vehicles", "Speed", "Transfers"),
}


class Prose:
    """Paragraphs drawn from one topic's sentences, none repeated until all were used."""

    def __init__(self, topic: str, seed: int):
        self.topic = topic
        self._random = random.Random(seed)
        self._pool: list[str] = []

    def sentence(self) -> str:
        if not self._pool:
            self._pool = list(TOPICS[self.topic])
            self._random.shuffle(self._pool)
        return self._pool.pop()

    def paragraph(self, sentences: tuple[int, int] = (3, 6)) -> str:
        return " ".join(self.sentence() for _ in range(self._random.randint(*sentences)))

    def nouns(self, count: int) -> list[str]:
        return self._random.sample(list(TOPIC_NOUNS[self.topic]), count)

    def numbers(self, count: int, low: float, high: float, digits: int = 1) -> list[str]:
        return [f"{self._random.uniform(low, high):.{digits}f}" for _ in range(count)]

    def choice(self, options):
        return self._random.choice(options)
