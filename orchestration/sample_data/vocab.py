"""Fixed vocabularies for the sample-data generator: places, names, devices, products."""

from __future__ import annotations

# country -> (weight, IANA time zones, locale, [(city, postcode prefix)], streets)
COUNTRIES: dict[str, dict] = {
    "GB": {"weight": 22, "tz": ["Europe/London"], "locale": "en-GB",
           "cities": [("London", "SW1A"), ("Manchester", "M1"), ("Leeds", "LS1"), ("Bristol", "BS1"), ("Glasgow", "G1")],
           "streets": ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane"]},
    "DE": {"weight": 14, "tz": ["Europe/Berlin"], "locale": "de-DE",
           "cities": [("Berlin", "10115"), ("München", "80331"), ("Köln", "50667"), ("Hamburg", "20095")],
           "streets": ["Hauptstraße", "Schulstraße", "Gartenweg", "Bahnhofstraße"]},
    "FR": {"weight": 10, "tz": ["Europe/Paris"], "locale": "fr-FR",
           "cities": [("Paris", "75001"), ("Lyon", "69001"), ("Marseille", "13001"), ("Nantes", "44000")],
           "streets": ["Rue de la Paix", "Avenue Victor Hugo", "Rue Nationale", "Boulevard Voltaire"]},
    "NL": {"weight": 6, "tz": ["Europe/Amsterdam"], "locale": "nl-NL",
           "cities": [("Amsterdam", "1011"), ("Rotterdam", "3011"), ("Utrecht", "3511")],
           "streets": ["Kerkstraat", "Dorpsstraat", "Molenweg"]},
    "ES": {"weight": 6, "tz": ["Europe/Madrid"], "locale": "es-ES",
           "cities": [("Madrid", "28001"), ("Barcelona", "08001"), ("Sevilla", "41001")],
           "streets": ["Calle Mayor", "Gran Vía", "Calle Real"]},
    "SE": {"weight": 4, "tz": ["Europe/Stockholm"], "locale": "sv-SE",
           "cities": [("Stockholm", "111 20"), ("Göteborg", "411 01")],
           "streets": ["Storgatan", "Kungsgatan"]},
    "US": {"weight": 26, "tz": ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"],
           "locale": "en-US",
           "cities": [("New York", "100"), ("Chicago", "606"), ("Denver", "802"), ("Los Angeles", "900"), ("Austin", "787")],
           "streets": ["Main Street", "Oak Avenue", "Maple Drive", "Park Place", "2nd Street"]},
    "CA": {"weight": 6, "tz": ["America/Toronto", "America/Vancouver"], "locale": "en-CA",
           "cities": [("Toronto", "M5H"), ("Vancouver", "V6B"), ("Montréal", "H2Y")],
           "streets": ["King Street", "Queen Street", "Yonge Street"]},
    "AU": {"weight": 6, "tz": ["Australia/Sydney", "Australia/Perth"], "locale": "en-AU",
           "cities": [("Sydney", "2000"), ("Melbourne", "3000"), ("Perth", "6000")],
           "streets": ["George Street", "Collins Street", "Hay Street"]},
}

FIRST_NAMES = [
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Isabella", "James",
    "Mia", "Lucas", "Charlotte", "Mateo", "Zoë", "José", "Chloé", "Łukasz", "Björn", "Anaïs",
    "Søren", "Renée", "François", "Małgorzata", "Jürgen", "Inés", "Ahmed", "Priya", "Wei", "Yuki",
    "Fatima", "Kwame", "Aoife", "Siobhán", "Dmitri", "Elena", "Marco", "Giulia", "Hannah", "Jonas",
    "Lena", "Lars", "Ingrid", "Pedro", "Lucía", "Tom", "Grace", "Harry", "Ella", "Jack",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Miller", "Davis", "Müller", "Schmidt",
    "Schneider", "Dubois", "Lefèvre", "Martin", "Bernard", "de Vries", "Jansen", "Rossi", "Russo",
    "Fernández", "López", "Andersson", "Johansson", "Nowak", "Kowalski", "O'Brien", "Murphy", "Kelly",
    "Taylor", "Wilson", "Thomas", "Moore", "Jackson", "White", "Harris", "Clark", "Lewis", "Walker",
    "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell",
    "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner", "Torres", "Parker", "Collins",
    "Edwards", "Stewart", "Flores", "Morris", "Nguyen", "Murray", "Rivera", "Cook", "Rogers", "Morgan",
    "Peterson", "Cooper", "Reed", "Bailey", "Bell", "Gómez", "Kelly", "Howard", "Ward", "Cox", "Díaz",
]

FREEMAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me", "gmx.de", "orange.fr"]

# Company domains that the enrichment file knows: (domain, company, industry, employees, revenue USD)
COMPANIES = [
    ("acme-corp.com", "Acme Corporation", "Manufacturing", 5400, 1_200_000_000),
    ("globex.io", "Globex", "Software", 820, 140_000_000),
    ("initech.com", "Initech", "Financial Services", 1300, 410_000_000),
    ("umbrella-health.com", "Umbrella Health", "Healthcare", 22000, 6_800_000_000),
    ("hooli.com", "Hooli", "Software", 61000, 90_000_000_000),
    ("stark-industries.com", "Stark Industries", "Aerospace", 34000, 12_000_000_000),
    ("wayne-enterprises.com", "Wayne Enterprises", "Conglomerate", 98000, 31_000_000_000),
    ("piedpiper.net", "Pied Piper", "Software", 45, 3_500_000),
    ("soylent.co", "Soylent Co", "Food & Beverage", 260, 70_000_000),
    ("vandelay-import.com", "Vandelay Industries", "Wholesale", 35, 9_000_000),
    ("oceanic-air.com", "Oceanic Airlines", "Transportation", 12000, 2_900_000_000),
    ("dunder-mifflin.com", "Dunder Mifflin", "Paper & Packaging", 1800, 290_000_000),
]

# (device type, user agent, library name of the collector)
USER_AGENTS = {
    "desktop": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36 Edg/129.0.0.0",
    ],
    "mobile": [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Mobile Safari/537.36",
    ],
    "tablet": [
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    ],
}
BOT_USER_AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "python-requests/2.32.3",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0.0.0 Safari/537.36",
]

CATEGORIES = [
    "shoes", "outerwear", "dresses", "denim", "knitwear", "accessories", "bags", "sportswear",
    "home", "beauty", "kids", "electronics",
]

REFERRERS = {
    "search": ["https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/"],
    "social": ["https://www.facebook.com/", "https://t.co/", "https://www.instagram.com/", "https://www.tiktok.com/"],
    "other": ["https://news.example-blog.com/review", "https://deals.example-forum.net/thread/42"],
    "direct": [""],
}
CAMPAIGNS = [
    {"source": "google", "medium": "cpc", "name": "brand_search"},
    {"source": "newsletter", "medium": "email", "name": "weekly_digest"},
    {"source": "instagram", "medium": "social", "name": "autumn_drop"},
]
ARTICLES = ["style-guide-autumn", "how-to-care-for-wool", "sustainable-fabrics", "size-guide", "behind-the-seams"]
