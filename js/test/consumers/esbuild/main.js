import * as vt from 'vision-tasks';
import { runChecks } from '../page.js';

runChecks(vt);
