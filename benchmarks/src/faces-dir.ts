export { FACES_MISSING, facesDir } from '@facegate/config';
