"""Sentences shared by make_reference.py and bench.py."""

LONG = (
    "I had been waiting at the station for nearly three hours, watching every train "
    "arrive and leave without the one person I hoped to see, and as the evening grew "
    "colder I started to wonder whether I had misunderstood the message, whether she "
    "had changed her mind, or whether something terrible had happened on the way. "
) * 6  # ~400 tokens: past the 256-token limit, so it tests truncation

REFERENCE = [
    "I love this!",
    "Happy",
    "I am so angry right now that I can't even think straight.",
    "The meeting has been moved to 3:30 pm on Thursday, 14 March 2024.",
    "WHY DOES THIS ALWAYS HAPPEN TO ME?!",
    "well... i guess it's fine. whatever.",
    "My dog passed away this morning and the house feels empty.",
    "Wow, I did not expect that at all — what a surprise!",
    "That smell is absolutely disgusting, I think I'm going to be sick.",
    "I'm scared of what the doctor will say tomorrow.",
    "Thanks so much for your help 😊🎉",
    "😡😡😡",
    "Order #48213 costs $1,299.99 and ships in 3-5 business days.",
    "Je suis très heureux de te revoir, mon ami.",
    "Estoy muy cansado y triste hoy.",
    "Ich habe Angst vor der Prüfung morgen.",
    "我今天非常开心，因为考试通过了！",
    "这个产品质量太差了，我很失望。",
    "今日はとても楽しかったです。",
    "Мне очень грустно без тебя.",
    "The quick brown fox jumps over the lazy dog.",
    "Can you please, PLEASE, just listen to me for once?",
    "ok",
    "It's not that I don't like it; it's that I expected more, given the price.",
    "\"Great,\" she said, rolling her eyes, \"another Monday.\"",
    "a b c d e f g h i j k l m n o p",
    LONG,
    "Neutral statement: the report contains twelve pages and four tables.",
]

SHORT = [
    "I love this!",
    "This is terrible.",
    "What a wonderful day at the beach.",
    "I'm not sure how I feel about that.",
    "Please stop calling me.",
    "The food was cold and the waiter was rude.",
    "Thank you so much for everything!",
    "I can't believe you did that.",
]

# A paragraph of ~120 tokens, typical of a longer chat message.
PARAGRAPH = (
    "Yesterday I finally got the results back from the interview I had two weeks ago. "
    "I had prepared for it for months, practised every question I could imagine, and "
    "even asked friends to run mock interviews with me. When the email arrived I could "
    "barely open it. They offered me the job, but the salary is lower than I hoped and "
    "the office is two hours away, so I honestly do not know whether to feel happy, "
    "relieved or disappointed, and I keep going back and forth about what to do."
)


def bench_sets(n=64):
    """The benchmark's short and long batches: n sentences each, varied but fixed."""
    short = [f"{SHORT[i % len(SHORT)]} ({i})" for i in range(n)]
    long = [f"{PARAGRAPH} ({i})" for i in range(n)]
    return short, long
