/**
 * Synthetic patients for the demo sites, in the vocabulary of demo/vocabulary.md.
 *
 * Everything is drawn from one seeded PRNG per site, so the same seed gives byte-identical Turtle
 * on every machine, and the central reference computations (demo/central.ts) can work on exactly
 * the records the sites serve. Values are rounded *before* anything else uses them (age to whole
 * years, BMI to one decimal), so the numbers in the Turtle and in memory are the same doubles.
 *
 * CLI: `node dist/demo/synthetic-data.js --out DIR [--seed N]` writes DIR/<site>.ttl per site.
 */
import fs from 'node:fs';
import path from 'node:path';
import { integerOption, runCommandLine, stringOption, UsageError } from '../shared/command-line.js';

export const PHT_NAMESPACE = 'https://w3id.org/pht/demo#';
export const DEMO_SEED = 20240611;

/** The diagnosis code list: vocabulary IRI local name, ICD-10 code and label. */
export const DIAGNOSES = {
  Hypertension: { icd10: 'I10', label: 'Essential hypertension' },
  Type2Diabetes: { icd10: 'E11', label: 'Type 2 diabetes mellitus' },
  HeartFailure: { icd10: 'I50', label: 'Heart failure' },
  COPD: { icd10: 'J44', label: 'Chronic obstructive pulmonary disease' },
} as const;
export type Diagnosis = keyof typeof DIAGNOSES;
const DIAGNOSIS_NAMES = Object.keys(DIAGNOSES) as Diagnosis[];

export interface Patient {
  /** Local id, unique within its site (also the last segment of the patient IRI). */
  id: string;
  site: string;
  age: number;
  sex: 'F' | 'M';
  /** Missing for a few patients at some sites, to make "complete cases" matter. */
  bmi: number | null;
  diagnosis: Diagnosis;
  /** 1 = alive two years after inclusion. */
  survived2y: 0 | 1;
}

/** How one site's population differs from the others. */
export interface SiteProfile {
  name: string;
  size: number;
  ageMean: number;
  ageSd: number;
  bmiMean: number;
  bmiSd: number;
  femaleShare: number;
  /** Share of patients whose BMI was never recorded. */
  bmiMissingShare: number;
  /** Relative weights of the diagnoses, in the order of DIAGNOSES. */
  diagnosisWeights: readonly [number, number, number, number];
}

/** Three hospitals of different size and case mix: a young one, a middle one, an old heavy one. */
export const DEMO_SITES: readonly SiteProfile[] = [
  {
    name: 'site-a',
    size: 400,
    ageMean: 52,
    ageSd: 12,
    bmiMean: 25.5,
    bmiSd: 3.5,
    femaleShare: 0.56,
    bmiMissingShare: 0,
    diagnosisWeights: [5, 3, 1, 1],
  },
  {
    name: 'site-b',
    size: 650,
    ageMean: 61,
    ageSd: 10,
    bmiMean: 27.5,
    bmiSd: 4.5,
    femaleShare: 0.49,
    bmiMissingShare: 0,
    diagnosisWeights: [4, 3, 2, 2],
  },
  {
    name: 'site-c',
    size: 900,
    ageMean: 68,
    ageSd: 9,
    bmiMean: 29,
    bmiSd: 5.5,
    femaleShare: 0.45,
    bmiMissingShare: 0.03,
    diagnosisWeights: [3, 3, 3, 2],
  },
];

/**
 * The model the outcome is drawn from: logit P(survived2y = 1) = b · x with
 * x = [1, (age - 60) / 10, (bmi - 27) / 5, female]. The same centring and scaling is the demo's
 * default for the logistic-regression algorithm, so its fitted coefficients are comparable to these.
 */
export const OUTCOME_MODEL = {
  standardize: { age: { center: 60, scale: 10 }, bmi: { center: 27, scale: 5 } },
  coefficients: [1.2, -0.9, -0.35, 0.4] as readonly number[],
} as const;

/** mulberry32: a tiny 32-bit PRNG, good enough for synthetic data and identical everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a, so each site's stream depends on its name and the seed, not on the order of sites. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A standard normal draw (Box–Muller); 1 - u keeps log away from 0. */
function normal(random: () => number): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

function pickWeighted<T>(items: readonly T[], weights: readonly number[], u: number): T {
  const total = weights.reduce((s, w) => s + w, 0);
  let acc = 0;
  for (let i = 0; i < items.length; i++) {
    acc += weights[i]! / total;
    if (u < acc) return items[i]!;
  }
  return items[items.length - 1]!;
}

/** The outcome probability of the generating model, for a patient with a recorded BMI. */
export function survivalProbability(age: number, bmi: number, sex: 'F' | 'M'): number {
  const { standardize: s, coefficients: b } = OUTCOME_MODEL;
  const eta =
    b[0]! +
    b[1]! * ((age - s.age.center) / s.age.scale) +
    b[2]! * ((bmi - s.bmi.center) / s.bmi.scale) +
    b[3]! * (sex === 'F' ? 1 : 0);
  return 1 / (1 + Math.exp(-eta));
}

/** The patients of one site. The draws per patient are always taken in the same order. */
export function generateSitePatients(profile: SiteProfile, seed: number = DEMO_SEED): Patient[] {
  const random = mulberry32((seed ^ hashName(profile.name)) >>> 0);
  const width = String(profile.size).length;
  const patients: Patient[] = [];
  for (let i = 1; i <= profile.size; i++) {
    const sex: 'F' | 'M' = random() < profile.femaleShare ? 'F' : 'M';
    const age = Math.round(clamp(profile.ageMean + profile.ageSd * normal(random), 18, 95));
    const bmiDrawn = Math.round(clamp(profile.bmiMean + profile.bmiSd * normal(random), 15, 50) * 10) / 10;
    const bmiMissing = random() < profile.bmiMissingShare;
    const diagnosis = pickWeighted(DIAGNOSIS_NAMES, profile.diagnosisWeights, random());
    // Patients without a recorded BMI still have an outcome; it comes from their true BMI.
    const survived2y = random() < survivalProbability(age, bmiDrawn, sex) ? 1 : 0;
    patients.push({
      id: String(i).padStart(width, '0'),
      site: profile.name,
      age,
      sex,
      bmi: bmiMissing ? null : bmiDrawn,
      diagnosis,
      survived2y,
    });
  }
  return patients;
}

/** Every demo site's patients, keyed by site name. */
export function generateDemoData(
  seed: number = DEMO_SEED,
  sites: readonly SiteProfile[] = DEMO_SITES,
): Map<string, Patient[]> {
  return new Map(sites.map((profile) => [profile.name, generateSitePatients(profile, seed)]));
}

/** The IRI of a patient: one namespace per site, so pooled graphs never collide. */
export function patientIri(patient: Pick<Patient, 'site' | 'id'>): string {
  return `https://w3id.org/pht/demo/${patient.site}/patient/${patient.id}`;
}

/** The code list as Turtle, included in every site's file so each endpoint is self-describing. */
function diagnosisCodeListTurtle(): string {
  return DIAGNOSIS_NAMES.map((name) => {
    const d = DIAGNOSES[name];
    return `pht:${name} a pht:Diagnosis ;\n    rdfs:label "${d.label}"@en ;\n    pht:icd10 "${d.icd10}" .\n`;
  }).join('\n');
}

/** Serialises one site's patients as Turtle (patients are expected to share one site). */
export function patientsToTurtle(patients: readonly Patient[]): string {
  const site = patients[0]?.site ?? 'empty';
  const lines = [
    `# Synthetic demo patients of ${site}. Generated by demo/synthetic-data.ts; see demo/vocabulary.md.`,
    `@prefix pht: <${PHT_NAMESPACE}> .`,
    '@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .',
    `@prefix patient: <https://w3id.org/pht/demo/${site}/patient/> .`,
    '',
    diagnosisCodeListTurtle(),
  ];
  for (const p of patients) {
    if (p.site !== site) throw new Error(`patientsToTurtle expects one site, got ${site} and ${p.site}`);
    const props = [
      `pht:age ${p.age}`,
      `pht:sex "${p.sex}"`,
      // toFixed keeps the decimal point, so 27.0 stays an xsd:decimal rather than an integer.
      ...(p.bmi === null ? [] : [`pht:bmi ${p.bmi.toFixed(1)}`]),
      `pht:diagnosis pht:${p.diagnosis}`,
      `pht:survived2y ${p.survived2y}`,
    ];
    lines.push(`patient:${p.id} a pht:Patient ;\n    ${props.join(' ;\n    ')} .`);
  }
  return lines.join('\n') + '\n';
}

/** Writes <dir>/<site>.ttl for every site and returns the paths, keyed by site name. */
export function writeDemoTurtle(dir: string, seed: number = DEMO_SEED): Map<string, string> {
  fs.mkdirSync(dir, { recursive: true });
  const files = new Map<string, string>();
  for (const [site, patients] of generateDemoData(seed)) {
    const file = path.join(dir, `${site}.ttl`);
    fs.writeFileSync(file, patientsToTurtle(patients));
    files.set(site, file);
  }
  return files;
}

const USAGE = `Usage: node dist/demo/synthetic-data.js --out DIR [--seed N]
  Writes DIR/<site>.ttl (synthetic patients) for each demo site; the same seed gives the same files.`;

export function main(argv: string[]): Promise<number> {
  return runCommandLine(argv, { usage: USAGE, options: { out: 'value', seed: 'value' } }, (args) => {
    const out = stringOption(args, 'out');
    if (!out) throw new UsageError('--out DIR is required');
    const seed = integerOption(args, 'seed', DEMO_SEED);
    for (const [site, file] of writeDemoTurtle(out, seed)) process.stdout.write(`${site}\t${file}\n`);
    return 0;
  });
}

if (require.main === module)
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
