import { describe, expect, it } from 'vitest';
import { ReplicaError } from '../src/errors.js';
import { compileGlob, compileGlobParents } from '../src/glob.js';

const matches = (glob: string, paths: string[]): string[] => paths.filter(compileGlob(glob));
const PATHS = ['/', '/a', '/a/b', '/a/b/c.txt', '/a/x.txt', '/x.txt', '/a.b/c', '/etc/passwd', '/etc/ssh/sshd_config', '/.hidden', '/a/.b.txt'];

describe('compileGlob', () => {
  it('matches every path with the empty glob', () => {
    expect(matches('', PATHS)).toEqual(PATHS);
  });
  it('keeps * and ? within one name', () => {
    expect(matches('/*', PATHS)).toEqual(['/', '/a', '/x.txt', '/a.b', '/etc', '/.hidden'].filter((p) => PATHS.includes(p)));
    expect(matches('/a/?', PATHS)).toEqual(['/a/b']);
    expect(matches('/*.txt', PATHS)).toEqual(['/x.txt']);
  });
  it('lets /**/ span any number of components, and /** everything below', () => {
    expect(matches('/a/**', PATHS)).toEqual(['/a/b', '/a/b/c.txt', '/a/x.txt', '/a/.b.txt']);
    expect(matches('/**/*.txt', PATHS)).toEqual(['/a/b/c.txt', '/a/x.txt', '/x.txt', '/a/.b.txt']);
    expect(matches('/a/**/c.txt', PATHS)).toEqual(['/a/b/c.txt']);
    expect(matches('/etc/**/sshd_config', PATHS)).toEqual(['/etc/ssh/sshd_config']);
  });
  it('matches a relative glob at any depth', () => {
    expect(matches('*.txt', PATHS)).toEqual(['/a/b/c.txt', '/a/x.txt', '/x.txt', '/a/.b.txt']);
    expect(matches('ssh/*', PATHS)).toEqual(['/etc/ssh/sshd_config']);
  });
  it('supports classes, negated classes and alternatives', () => {
    expect(matches('/[ae]*', PATHS)).toEqual(['/a']);
    expect(matches('/[a-f]*/*', PATHS)).toEqual(['/a/b', '/a/x.txt', '/a.b/c', '/etc/passwd', '/a/.b.txt']);
    expect(matches('/[!ae]*', PATHS)).toEqual(['/x.txt', '/.hidden']);
    expect(matches('/{etc,a}/*', PATHS)).toEqual(['/a/b', '/a/x.txt', '/etc/passwd', '/a/.b.txt']);
    expect(matches('/a/{b/*.txt,x.*}', PATHS)).toEqual(['/a/b/c.txt', '/a/x.txt']);
  });
  it('lets a brace alternative start with "/" or hold "/" and "**"', () => {
    expect(matches('{/a,/etc}/**', PATHS)).toEqual(['/a/b', '/a/b/c.txt', '/a/x.txt', '/etc/passwd', '/etc/ssh/sshd_config', '/a/.b.txt']);
    expect(matches('{/x.txt,/a/b/c.txt}', PATHS)).toEqual(['/a/b/c.txt', '/x.txt']);
    expect(matches('{/a/**/c.txt,/etc/**}', PATHS)).toEqual(['/a/b/c.txt', '/etc/passwd', '/etc/ssh/sshd_config']);
    // Each alternative decides on its own whether it is anchored.
    expect(matches('{/x.txt,sshd_*}', PATHS)).toEqual(['/x.txt', '/etc/ssh/sshd_config']);
    expect(matches('/a/{b,/x.txt}', PATHS)).toEqual(['/a/b', '/a/x.txt']);
    expect(matches('{,/etc}/passwd', ['/passwd', '/etc/passwd', '/x/passwd'])).toEqual(['/passwd', '/etc/passwd']);
    expect(matches('/{a,etc}/{b,ssh}/*', PATHS)).toEqual(['/a/b/c.txt', '/etc/ssh/sshd_config']);
  });
  it('keeps braces, commas and classes inside escapes and classes literal', () => {
    expect(compileGlob('/\\{a,b\\}')('/{a,b}')).toBe(true);
    expect(compileGlob('/{[,],x}')('/,')).toBe(true);
    expect(compileGlob('/a,b}')('/a,b}')).toBe(true);
  });
  it('rejects a brace glob that expands to too many alternatives as InvalidArgument', () => {
    expect(() => compileGlob('/{a,b}'.repeat(11))).toThrow(/more than 1024 alternatives/);
    expect(compileGlob('/{a,b}'.repeat(10))('/a/b/a/b/a/b/a/b/a/b')).toBe(true);
  });
  it('takes regex syntax and escaped glob characters literally', () => {
    expect(compileGlob('/a.b/c')('/aXb/c')).toBe(false);
    expect(compileGlob('/(x)|y+')('/(x)|y+')).toBe(true);
    expect(compileGlob('/\\*')('/*')).toBe(true);
    expect(compileGlob('/\\*')('/a')).toBe(false);
    expect(compileGlob('/caf\\\\xff')('/caf\\xff')).toBe(true);
    expect(compileGlob('/[\\]]')('/]')).toBe(true);
  });
  it('never lets a class match "/"', () => {
    expect(compileGlob('/a[/]b')('/a/b')).toBe(false);
    expect(compileGlob('/a[!x]b')('/a/b')).toBe(false);
  });
  it('rejects unclosed classes and braces and a trailing backslash as InvalidArgument', () => {
    for (const g of ['/[ab', '/{a,b', '/a\\', '/{{{{{{{{{a}}}}}}}}}']) {
      expect(() => compileGlob(g), g).toThrow(ReplicaError);
      try {
        compileGlob(g);
      } catch (err) {
        expect((err as ReplicaError).code).toBe('InvalidArgument');
      }
    }
  });
});

describe('compileGlobParents', () => {
  const DIRS = ['/', '/a', '/a/b', '/a/b/c', '/a/x', '/b', '/etc', '/etc/ssh', '/etc/ssh/keys', '/etcx'];
  const parents = (glob: string): string[] => DIRS.filter(compileGlobParents(glob));
  it('matches the directories a matching path lies below, not the ones beside or below its last name', () => {
    expect(parents('/etc/ssh/sshd_config')).toEqual(['/etc', '/etc/ssh']);
    expect(parents('/a/b/*.txt')).toEqual(['/a', '/a/b']);
    expect(parents('/a/*/c')).toEqual(['/a', '/a/b', '/a/x']);
  });
  it('matches the root of a ** and everything below it', () => {
    expect(parents('/etc/**')).toEqual(['/etc', '/etc/ssh', '/etc/ssh/keys']);
    expect(parents('/a/**/c.txt')).toEqual(['/a', '/a/b', '/a/b/c', '/a/x']);
  });
  it('matches every directory for a glob at any depth or a ** after the root', () => {
    expect(parents('*.log')).toEqual(DIRS);
    expect(parents('/**/x')).toEqual(DIRS);
  });
  it('takes alternatives, classes and escapes as compileGlob does', () => {
    expect(parents('{/etc/ssh/*,/b/**}')).toEqual(['/b', '/etc', '/etc/ssh']);
    expect(parents('/[ae]tc/x')).toEqual(['/etc']);
    expect(parents('/et\\c/x')).toEqual(['/etc']);
    expect(parents('/x')).toEqual([]);
    expect(() => compileGlobParents('/[abc')).toThrow(ReplicaError);
  });
});

