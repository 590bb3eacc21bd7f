/**
 * What the user typed into the launch form, read as request values: the command line as words, a duration, the
 * environment. Each throws an Error saying what is wrong, which the form shows under the field.
 */

/**
 * Splits a command line into words the way a POSIX shell would, without expansions: whitespace separates words,
 * single quotes keep everything literally, double quotes keep everything but \\ \" \$ \` escapes, and a backslash
 * outside quotes escapes the next character.
 */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error("a single quote is not closed");
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= line.length) throw new Error("a double quote is not closed");
        const d = line[i];
        if (d === '"') break;
        if (d === "\\" && i + 1 < line.length && '\\"$`\n'.includes(line[i + 1])) {
          if (line[i + 1] !== "\n") word += line[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      inWord = true;
      i++;
    } else if (c === "\\") {
      if (i + 1 >= line.length) throw new Error("the command ends with a lone backslash");
      if (line[i + 1] !== "\n") {
        word += line[i + 1];
        inWord = true;
      }
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i++;
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "90s", "10m", "1h30m", "1.5h" or plain seconds ("600") as a Duration. */
export function parseDuration(text: string): { seconds: bigint; nanos: number } {
  const compact = text.trim().replace(/\s+/g, "");
  let total = 0;
  if (/^\d+(\.\d+)?$/.test(compact)) {
    total = Number(compact);
  } else {
    const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
    let matched = 0;
    for (let m = part.exec(compact); m; m = part.exec(compact)) {
      total += Number(m[1]) * UNIT_SECONDS[m[2]];
      matched = part.lastIndex;
    }
    if (matched === 0 || matched !== compact.length) {
      throw new Error(`${JSON.stringify(text.trim())} is not a duration such as 90s, 10m or 1h30m`);
    }
  }
  if (total <= 0) throw new Error("must be above zero; leave it empty for no limit");
  const whole = Math.floor(total);
  return { seconds: BigInt(whole), nanos: Math.round((total - whole) * 1e9) };
}

/** KEY=VALUE lines; blank lines and lines starting with # are skipped. */
export function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim() || line.trimStart().startsWith("#")) return;
    const eq = line.indexOf("=");
    const key = eq < 0 ? "" : line.slice(0, eq).trim();
    if (!key) throw new Error(`line ${index + 1}: expected KEY=VALUE`);
    env[key] = line.slice(eq + 1);
  });
  return env;
}
