import { Store } from 'oxigraph';
import { describe, expect, it } from 'vitest';
import { centralDescriptiveStats, centralLogisticRegression, pooledDemoPatients } from '../../demo/central.js';
import {
  DEMO_SEED,
  DEMO_SITES,
  generateDemoData,
  generateSitePatients,
  mulberry32,
  OUTCOME_MODEL,
  patientsToTurtle,
} from '../../demo/synthetic-data.js';

describe('synthetic demo data', () => {
  it('mulberry32 gives the same stream on every machine (pinned values)', () => {
    const random = mulberry32(42);
    const first = [random(), random(), random()];
    expect(first).toEqual([0.6011037519201636, 0.44829055899754167, 0.8524657934904099]);
    for (const x of first) expect(x >= 0 && x < 1).toBe(true);
  });

  it('reproduces byte-identical Turtle from the same seed and differs with another seed', () => {
    const turtle = (seed: number) => [...generateDemoData(seed).values()].map(patientsToTurtle).join('');
    expect(turtle(DEMO_SEED)).toBe(turtle(DEMO_SEED));
    expect(turtle(DEMO_SEED + 1)).not.toBe(turtle(DEMO_SEED));
  });

  it("draws a site's patients independently of the other sites", () => {
    const all = generateDemoData(DEMO_SEED);
    const siteC = DEMO_SITES.find((s) => s.name === 'site-c')!;
    expect(generateSitePatients(siteC, DEMO_SEED)).toEqual(all.get('site-c'));
    expect(generateDemoData(DEMO_SEED, [siteC]).get('site-c')).toEqual(all.get('site-c'));
  });

  it('generates three sites of 400, 650 and 900 patients with differing age, BMI and missingness', () => {
    const data = generateDemoData();
    expect([...data.keys()]).toEqual(['site-a', 'site-b', 'site-c']);
    expect([...data.values()].map((p) => p.length)).toEqual([400, 650, 900]);
    const stats = new Map([...data].map(([site, patients]) => [site, centralDescriptiveStats(patients)]));
    const age = (site: string) => stats.get(site)!.variables.age;
    const bmi = (site: string) => stats.get(site)!.variables.bmi;
    // Site means are several standard errors apart, in the order of the profiles.
    expect(age('site-a').mean!).toBeLessThan(age('site-b').mean! - 5);
    expect(age('site-b').mean!).toBeLessThan(age('site-c').mean! - 5);
    expect(bmi('site-a').sd!).toBeLessThan(bmi('site-b').sd! - 0.5);
    expect(bmi('site-b').sd!).toBeLessThan(bmi('site-c').sd! - 0.5);
    // Only site-c has patients without a BMI.
    expect(bmi('site-a').count).toBe(400);
    expect(bmi('site-b').count).toBe(650);
    expect(bmi('site-c').count).toBeLessThan(900);
    expect(bmi('site-c').count).toBeGreaterThan(900 - 60);
    for (const patients of data.values()) {
      for (const p of patients) {
        expect(Number.isInteger(p.age) && p.age >= 18 && p.age <= 95).toBe(true);
        if (p.bmi !== null) expect(Math.round(p.bmi * 10) / 10).toBe(p.bmi);
      }
    }
  });

  it('draws outcomes a logistic regression recovers: fitted coefficients within 3 standard errors of the truth', () => {
    const fit = centralLogisticRegression(pooledDemoPatients());
    fit.coefficients.forEach((b, i) => {
      expect(Math.abs(b - OUTCOME_MODEL.coefficients[i]!)).toBeLessThan(3 * fit.standardErrors[i]!);
    });
  });

  it('writes Turtle that oxigraph loads, with every value typed as the vocabulary says', () => {
    const patients = generateDemoData().get('site-c')!;
    const store = new Store();
    store.load(patientsToTurtle(patients), { format: 'text/turtle' });
    const rows = store.query(`
      PREFIX pht: <https://w3id.org/pht/demo#>
      PREFIX xsd: <http://www.w3.org/2001/XMLSchema#>
      SELECT (COUNT(?p) AS ?n) (SUM(?bmiTyped) AS ?bmis) (SUM(?ageTyped) AS ?ages) WHERE {
        ?p a pht:Patient ; pht:age ?age .
        OPTIONAL { ?p pht:bmi ?bmi }
        BIND(IF(BOUND(?bmi) && DATATYPE(?bmi) = xsd:decimal, 1, 0) AS ?bmiTyped)
        BIND(IF(DATATYPE(?age) = xsd:integer, 1, 0) AS ?ageTyped)
      }`) as Map<string, { value: string }>[];
    const withBmi = patients.filter((p) => p.bmi !== null).length;
    expect(rows[0]!.get('n')!.value).toBe('900');
    expect(rows[0]!.get('ages')!.value).toBe('900');
    expect(rows[0]!.get('bmis')!.value).toBe(String(withBmi));
  });

  it('keeps a whole-number BMI a decimal in Turtle (27.0, not 27)', () => {
    const turtle = patientsToTurtle([
      { id: '1', site: 'site-x', age: 40, sex: 'M', bmi: 27, diagnosis: 'COPD', survived2y: 1 },
    ]);
    expect(turtle).toContain('pht:bmi 27.0 ;');
  });
});
