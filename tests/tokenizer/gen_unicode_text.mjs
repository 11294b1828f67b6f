// gen_unicode_text.mjs — writes tests/tokenizer/unicode_text.txt, the Unicode-heavy text of
// `make bench`: paragraphs of Chinese, Japanese, Korean, Russian, Greek, Arabic, Hebrew,
// Hindi and Thai, English with emoji, and mixtures, built from the word lists below by a
// seeded generator (the same file every run).
//
//   node tests/tokenizer/gen_unicode_text.mjs > tests/tokenizer/unicode_text.txt
const languages = {
  chinese: { join: '', end: ['。', '！', '？'], comma: '，', words:
    ['我们', '今天', '学习', '自然', '语言', '处理', '的', '模型', '非常', '有趣', '计算机', '可以', '理解', '文字',
     '城市', '天气', '朋友', '一起', '吃饭', '时间', '问题', '重要', '世界', '发展', '经济', '科学', '技术', '历史'] },
  japanese: { join: '', end: ['。', '！'], comma: '、', words:
    ['私は', '東京', 'で', '働いて', 'います', '今日', 'は', '天気', 'が', '良い', 'です', 'ね', 'コンピュータ',
     'プログラム', 'を', '書く', 'ことが', '好き', '日本語', '勉強', '電車', '駅', '桜', 'きれい', 'ラーメン'] },
  korean: { join: ' ', end: ['.', '?'], comma: ',', words:
    ['안녕하세요', '오늘은', '날씨가', '좋습니다', '우리는', '한국어를', '공부합니다', '컴퓨터', '프로그램',
     '사람들이', '많이', '도시에서', '친구와', '함께', '음식을', '먹었습니다', '시간이', '없어요', '정말'] },
  russian: { join: ' ', end: ['.', '!', '?'], comma: ',', words:
    ['сегодня', 'мы', 'изучаем', 'язык', 'модели', 'очень', 'интересно', 'компьютер', 'может', 'понимать', 'текст',
     'город', 'погода', 'хорошая', 'друзья', 'вместе', 'время', 'вопрос', 'важный', 'мир', 'наука', 'история'] },
  greek: { join: ' ', end: ['.', ';'], comma: ',', words:
    ['σήμερα', 'μαθαίνουμε', 'γλώσσα', 'πολύ', 'ενδιαφέρον', 'υπολογιστής', 'μπορεί', 'να', 'καταλάβει', 'κείμενο',
     'πόλη', 'καιρός', 'φίλοι', 'μαζί', 'χρόνος', 'ερώτηση', 'σημαντικό', 'κόσμος', 'επιστήμη', 'ιστορία'] },
  arabic: { join: ' ', end: ['.', '؟'], comma: '،', words:
    ['اليوم', 'نتعلم', 'اللغة', 'العربية', 'الحاسوب', 'يستطيع', 'فهم', 'النص', 'المدينة', 'الطقس', 'جميل',
     'الأصدقاء', 'معا', 'الوقت', 'السؤال', 'مهم', 'العالم', 'العلم', 'التاريخ', 'كتاب', 'في', 'من', 'على'] },
  hebrew: { join: ' ', end: ['.', '?'], comma: ',', words:
    ['היום', 'אנחנו', 'לומדים', 'שפה', 'מחשב', 'יכול', 'להבין', 'טקסט', 'עיר', 'מזג', 'אוויר', 'חברים', 'ביחד',
     'זמן', 'שאלה', 'חשובה', 'עולם', 'מדע', 'היסטוריה', 'ספר'] },
  hindi: { join: ' ', end: ['।', '?'], comma: ',', words:
    ['आज', 'हम', 'भाषा', 'सीखते', 'हैं', 'कंप्यूटर', 'पाठ', 'समझ', 'सकता', 'है', 'शहर', 'मौसम', 'अच्छा', 'दोस्त',
     'साथ', 'समय', 'सवाल', 'महत्वपूर्ण', 'दुनिया', 'विज्ञान', 'इतिहास', 'किताब', 'में', 'का', 'की'] },
  thai: { join: '', end: [' '], comma: ' ', words:
    ['วันนี้', 'เรา', 'เรียน', 'ภาษา', 'ไทย', 'คอมพิวเตอร์', 'สามารถ', 'เข้าใจ', 'ข้อความ', 'เมือง', 'อากาศ', 'ดี',
     'เพื่อน', 'ด้วยกัน', 'เวลา', 'คำถาม', 'สำคัญ', 'โลก', 'วิทยาศาสตร์', 'ประวัติศาสตร์'] },
  emoji: { join: ' ', end: ['! 🎉', '. ✨', '? 🤔', '!! 😂😂'], comma: ',', words:
    ['we', 'shipped', 'the', 'release', '🚀', 'coffee', '☕', 'is', 'ready', 'love', 'it', '❤️', 'great', 'job',
     '👍🏽', 'team', '👩‍💻', '👨‍👩‍👧‍👦', 'family', 'trip', '🏖️', 'to', 'Tokyo', '🇯🇵', 'so', 'happy', '😀', '🔥'] },
};

let seed = 20240601;
function random() {  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(random() * a.length)];

function sentence(lang) {
  const words = [];
  for (let n = 5 + Math.floor(random() * 12); n > 0; n--) words.push(pick(lang.words));
  if (words.length > 8) words.splice(4 + Math.floor(random() * 4), 0, lang.comma);
  return words.join(lang.join).replaceAll(lang.join + lang.comma, lang.comma) + pick(lang.end);
}

const names = Object.keys(languages);
const paragraphs = [];
let size = 0;
while (size < 150000) {
  // mostly one language a paragraph; one in five mixes several
  const mixed = random() < 0.2;
  const sentences = [];
  for (let n = 3 + Math.floor(random() * 5); n > 0; n--)
    sentences.push(sentence(languages[mixed ? pick(names) : names[paragraphs.length % names.length]]));
  const p = sentences.join(' ');
  paragraphs.push(p);
  size += Buffer.byteLength(p) + 2;
}
process.stdout.write(paragraphs.join('\n\n') + '\n');
