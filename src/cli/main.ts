#!/usr/bin/env node
// The CLI entry when Node loads lapin as modules (no start-up snapshot: see snapshot.ts).
import { runCli } from './program.js';

runCli(process.argv.slice(2));
